"""Pipeline benchmarks (issue: notebook pipelines), printing ratios of medians, interleaved in one process:
1. 5 trivial steps: our runner (fresh run) vs 5 sequential papermill.execute_notebook calls. Target <= 1.15x.
2. The same pipeline fully cached vs a fresh run. Target <= 0.1x.
3. 8 grid points with jobs=2 vs a sequential papermill loop. Target >= 1.6x faster.
4. Whole processes, as users type them (issue 17): `mlops-nb run --force` on 5 chained steps, with warm kernels (the
   zygote, the default) and cold ones (MLOPS_NB_PRELOAD=off), vs one `python` process running 5
   papermill.execute_notebook calls; first on trivial steps (target <= 0.8x, stretch 0.6x), then on steps that import
   pandas, scikit-learn and MLflow as real ones do; and `mlops-nb run` with every step cached vs `python -c "import
   mlflow"` (target <= 0.7x). BENCH_WHOLE=0 skips it, BENCH_WHOLE=only runs just it."""
import os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import nbformat, papermill as pm, yaml

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_")).resolve()
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
from mlops_nb.pipeline import run_pipeline

def notebook(path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("i = 0", metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell("x = i * 2")]
    nbformat.write(nb, path)

notebook(tmp/"step.ipynb")
(tmp/"five.yaml").write_text(yaml.safe_dump({"name": "five", "steps": [
    {"name": f"s{k}", "notebook": "step.ipynb", "params": {"i": k}, **({"needs": [f"s{k-1}"]} if k else {})} for k in range(5)]}))
(tmp/"grid.yaml").write_text(yaml.safe_dump({"name": "grid", "steps": [
    {"name": "g", "notebook": "step.ipynb", "grid": {"i": list(range(8))}}]}))

def heavy_notebook(path):
    "A step as real ones start: pandas, scikit-learn and MLflow imported, a little work."
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("i = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import pandas as pd, mlflow\nfrom sklearn.linear_model import Ridge\n"
                                          "df = pd.DataFrame({'x': range(10), 'y': range(10)})\nRidge().fit(df[['x']], df.y).coef_")]
    nbformat.write(nb, path)

def whole(kind:str)->Path:
    "A project with 5 chained steps of `kind` (trivial or heavy), its store created."
    root = tmp/f"whole-{kind}"
    root.mkdir()
    (root/"mlops_nb.toml").write_text("")
    (notebook if kind == "trivial" else heavy_notebook)(root/"step.ipynb")
    (root/"pipeline.yaml").write_text(yaml.safe_dump({"name": "five", "steps": [
        {"name": f"s{k}", "notebook": "step.ipynb", "params": {"i": k}, **({"needs": [f"s{k-1}"]} if k else {})} for k in range(5)]}))
    return root

def whole_processes(kind:str, rounds=ROUNDS):
    "Median seconds of the three whole processes, interleaved: runner warm, runner cold, the papermill loop."
    root, bin_ = whole(kind), Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLOPS_NB_PRELOAD")}
    loop = ("import papermill as pm\nfor k in range(5): pm.execute_notebook('step.ipynb', f'pm{k}.ipynb', "
            "parameters={'i': k}, progress_bar=False)")
    commands = {"warm": ([bin_/"mlops-nb", "run", "--force"], env), "cold": ([bin_/"mlops-nb", "run", "--force"], {**env, "MLOPS_NB_PRELOAD": "off"}),
                "papermill": ([sys.executable, "-c", loop], env),
                "cached": ([bin_/"mlops-nb", "run"], env), "import mlflow": ([sys.executable, "-c", "import mlflow"], env)}
    go = lambda name: subprocess.run(commands[name][0], cwd=root, env=commands[name][1], check=True, capture_output=True)
    for name in commands: go(name)  # warm up: the store, the page cache
    times = {name: [] for name in commands}
    for _ in range(rounds):
        for name in commands: times[name].append(timed(lambda: go(name)))
    return {name: statistics.median(t) for name, t in times.items()}

def papermill_loop(n):
    for k in range(n): pm.execute_notebook(str(tmp/"step.ipynb"), str(tmp/f"pm{k}.ipynb"), parameters={"i": k}, progress_bar=False, cwd=str(tmp))

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def median_pairs(a, b, rounds=ROUNDS):
    a(); b()  # warm up: imports, the store, kernelspecs
    ta, tb = [], []
    for _ in range(rounds): ta.append(timed(a)); tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)

def report_whole():
    for kind in ("trivial", "heavy"):
        t = whole_processes(kind)
        print(f"5 {kind} steps, whole processes: mlops-nb run --force warm {t['warm']:.2f}s, cold {t['cold']:.2f}s vs "
              f"python + 5 x papermill {t['papermill']:.2f}s = {t['warm']/t['papermill']:.3f}x warm, "
              f"{t['cold']/t['papermill']:.3f}x cold" + (" (target <= 0.8x)" if kind == "trivial" else ""))
        print(f"  every step cached: mlops-nb run {t['cached']:.2f}s vs python -c 'import mlflow' {t['import mlflow']:.2f}s = "
              f"{t['cached']/t['import mlflow']:.3f}x (target <= 0.7x)")

if __name__ == "__main__":
    if os.environ.get("BENCH_WHOLE") == "only": report_whole(); sys.exit()
    ours, theirs = median_pairs(lambda: run_pipeline(tmp/"five.yaml", force=True, jobs=1, progress=False), lambda: papermill_loop(5))
    print(f"5 trivial steps: runner {ours:.2f}s vs 5 x papermill {theirs:.2f}s = {ours/theirs:.3f}x (target <= 1.15x)")
    cached, fresh = median_pairs(lambda: run_pipeline(tmp/"five.yaml", progress=False), lambda: run_pipeline(tmp/"five.yaml", force=True, progress=False))
    print(f"fully cached {cached:.3f}s vs fresh {fresh:.2f}s = {cached/fresh:.3f}x (target <= 0.1x)")
    par, seq = median_pairs(lambda: run_pipeline(tmp/"grid.yaml", force=True, jobs=2, progress=False), lambda: papermill_loop(8))
    print(f"8 grid points: jobs=2 {par:.2f}s vs sequential papermill {seq:.2f}s = {seq/par:.2f}x faster (target >= 1.6x), {os.cpu_count()} cores")
    if os.environ.get("BENCH_WHOLE") != "0": report_whole()
