"""Pipeline benchmarks (issue: notebook pipelines), printing ratios of medians, interleaved in one process:
1. 5 trivial steps: our runner (fresh run) vs 5 sequential papermill.execute_notebook calls. Target <= 1.15x.
2. The same pipeline fully cached vs a fresh run. Target <= 0.1x.
3. 8 grid points with jobs=2 vs a sequential papermill loop. Target >= 1.6x faster."""
import os, statistics, sys, tempfile, time
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

def papermill_loop(n):
    for k in range(n): pm.execute_notebook(str(tmp/"step.ipynb"), str(tmp/f"pm{k}.ipynb"), parameters={"i": k}, progress_bar=False, cwd=str(tmp))

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def median_pairs(a, b, rounds=ROUNDS):
    a(); b()  # warm up: imports, the store, kernelspecs
    ta, tb = [], []
    for _ in range(rounds): ta.append(timed(a)); tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)

if __name__ == "__main__":
    ours, theirs = median_pairs(lambda: run_pipeline(tmp/"five.yaml", force=True, jobs=1, progress=False), lambda: papermill_loop(5))
    print(f"5 trivial steps: runner {ours:.2f}s vs 5 x papermill {theirs:.2f}s = {ours/theirs:.3f}x (target <= 1.15x)")
    cached, fresh = median_pairs(lambda: run_pipeline(tmp/"five.yaml", progress=False), lambda: run_pipeline(tmp/"five.yaml", force=True, progress=False))
    print(f"fully cached {cached:.3f}s vs fresh {fresh:.2f}s = {cached/fresh:.3f}x (target <= 0.1x)")
    par, seq = median_pairs(lambda: run_pipeline(tmp/"grid.yaml", force=True, jobs=2, progress=False), lambda: papermill_loop(8))
    print(f"8 grid points: jobs=2 {par:.2f}s vs sequential papermill {seq:.2f}s = {seq/par:.2f}x faster (target >= 1.6x), {os.cpu_count()} cores")
