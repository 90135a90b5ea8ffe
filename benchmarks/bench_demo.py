"""The whole demo (issue: flights pipeline): first run and fully cached run, median of 3 each, and the share of the
first run's task time spent starting kernels (a trivial notebook's papermill time, per task) vs computing."""
import os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import nbformat, papermill as pm

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
MLOPS = Path(sys.executable).parent/"mlops-nb"

def demo(workdir:Path)->tuple[float, float]:
    "Seconds of the whole demo, and of its pipeline part (until the replay's first line)."
    t, pipeline, err = time.perf_counter(), None, workdir.with_suffix(".stderr")
    with err.open("w") as stderr, subprocess.Popen([str(MLOPS), "demo", "--workdir", str(workdir)], stdout=subprocess.PIPE,
            stderr=stderr, text=True, env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}) as p:
        for line in p.stdout:
            if pipeline is None and line.startswith("retraining loop"): pipeline = time.perf_counter() - t
    assert p.returncode == 0, f"mlops-nb demo exited {p.returncode}:\n{err.read_text()[-3000:]}"
    assert pipeline is not None, "mlops-nb demo printed no 'retraining loop' line: was the replay turned off?"
    return time.perf_counter() - t, pipeline

def kernel_overhead(tmp:Path, n=5)->float:
    "Median seconds papermill needs for a notebook that computes nothing: kernel start, one cell, shutdown."
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]})]
    nbformat.write(nb, tmp/"empty.ipynb")
    times = []
    for _ in range(n):
        t = time.perf_counter(); pm.execute_notebook(str(tmp/"empty.ipynb"), str(tmp/"out.ipynb"), progress_bar=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times)

if __name__ == "__main__":
    tmp = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    first, cached, pipeline = [], [], []
    for i in range(ROUNDS):
        (total, part), (again, _) = demo(tmp/f"demo{i}"), demo(tmp/f"demo{i}")
        first.append(total); pipeline.append(part); cached.append(again)
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/demo{ROUNDS-1}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["flights"], filter_string="tags.mlops_nb.step != ''", output_format="list")
    first_runs = [r for r in runs if "mlops_nb.seconds" in r.data.tags]
    task_seconds = sum(float(r.data.tags["mlops_nb.seconds"]) for r in first_runs)
    startup = kernel_overhead(tmp) * len(first_runs)
    print(f"demo first run: median {statistics.median(first):.1f}s of {ROUNDS} ({', '.join(f'{t:.1f}' for t in first)})")
    print(f"  of which the pipeline: median {statistics.median(pipeline):.1f}s, the year's replay: "
          f"median {statistics.median(t - p for t, p in zip(first, pipeline)):.1f}s")
    print(f"demo cached run: median {statistics.median(cached):.1f}s ({', '.join(f'{t:.1f}' for t in cached)}) = "
          f"{statistics.median(cached)/statistics.median(first):.3f}x the first run")
    print(f"first run: {len(first_runs)} tasks, {task_seconds:.1f} task-seconds; kernel start-up ~{startup:.1f}s "
          f"({startup/task_seconds:.0%}), computation and logging ~{task_seconds-startup:.1f}s ({1-startup/task_seconds:.0%})")
