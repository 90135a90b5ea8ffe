"""Dask executor benchmark (issue 10): the 32-point sweep, local executor (jobs=2) vs DaskExecutor on a LocalCluster
of 2 worker processes, forced (no cache), interleaved in one process; prints medians and the overhead ratio dask/local.
1. trivial points (`x = i * 2`): the executor's overhead at its most visible;
2. tracked points (`track()` logs a metric, as a real sweep does): the overhead on a realistic point.
The cluster is started once, before timing (its start-up is printed separately). BENCH_ROUNDS sets the rounds (default 3)
of the trivial sweep; the tracked sweep runs max(1, BENCH_ROUNDS - 2) rounds (each round is two sweeps of 32 kernels).
Everything runs under `if __name__ == "__main__"`: Dask starts its workers with `spawn`, which re-imports this file."""
import os, statistics, tempfile, time
from pathlib import Path

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))

def notebook(path:Path, code:str):
    import nbformat
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("a = 0\nb = 0", metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)

def sweep(tmp:Path, name:str, code:str)->Path:
    "A 32-point grid pipeline (8 x 4) over a notebook running `code`."
    import yaml
    notebook(tmp/f"{name}.ipynb", code)
    (tmp/f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "steps": [
        {"name": "point", "notebook": f"{name}.ipynb", "grid": {"a": list(range(8)), "b": list(range(4))}}]}))
    return tmp/f"{name}.yaml"

def timed(fn)->float:
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def median_pairs(a, b, rounds:int):
    a(); b()  # warm up: imports, the store, kernelspecs, the workers' first imports
    ta, tb = [], []
    for _ in range(rounds): ta.append(timed(a)); tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)

def main():
    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_")).resolve()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    from mlops_nb.config import use_store
    from mlops_nb.dask_executor import DaskExecutor
    from mlops_nb.pipeline import run_pipeline
    use_store()
    started = time.perf_counter()
    dask = DaskExecutor(workers=2)
    print(f"LocalCluster of 2 worker processes started in {time.perf_counter() - started:.2f}s ({os.cpu_count()} cores)")
    try:
        for name, code, rounds in [("trivial", "x = a * 10 + b", ROUNDS),
                                   ("tracked", "from mlops_nb.tracking import track\nwith track() as run: run.log_metrics(score=a * 10 + b / 4)",
                                    max(1, ROUNDS - 2))]:
            path = sweep(tmp, name, code)
            local, on_dask = median_pairs(lambda: run_pipeline(path, force=True, jobs=2, progress=False),
                                          lambda: run_pipeline(path, force=True, executor=dask, progress=False), rounds)
            print(f"32 {name} points: local jobs=2 {local:.2f}s vs dask 2 workers {on_dask:.2f}s = {on_dask/local:.3f}x "
                  f"(dask/local, median of {rounds})")
    finally: dask.shutdown()

if __name__ == "__main__":
    main()
