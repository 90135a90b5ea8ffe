"""Registry benchmark (issue: registry). `versions(name)` with 200 versions vs what a user writes with plain
MlflowClient: search_model_versions, then get_run per version for its metrics. Interleaved, medians, ratio printed.
Target: <= 0.5x."""
import os, statistics, tempfile, time
from pathlib import Path

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 7))
tmp = Path(tempfile.mkdtemp(prefix="bench_registry_"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
os.chdir(tmp)

import pandas as pd
from mlflow import MlflowClient
from sklearn.linear_model import Ridge
from mlops_nb.tracking import track
from mlops_nb.registry import register, versions

def setup(n=200):
    "n runs, each with metrics and its own logged model, each registered as a version of 'bench'."
    X = pd.DataFrame({"distance": [100.0, 500.0, 1000.0]})
    with track("bench") as r: info = r.log_model(Ridge().fit(X, X.distance / 8), X)
    client = MlflowClient()
    for i in range(n):
        with track("bench", params={"i": i}) as r: r.log_metrics(rmse=10 + i % 17, mae=7 + i % 5)
        mv = register(info.model_uri, "bench", metrics={"rmse": 10 + i % 17, "mae": 7 + i % 5}, evaluation="feb")
        client.update_model_version("bench", mv.version, description=f"run {r.run_id}")
    return client

def plain(client):
    "The user's version: versions, then each version's run for its metrics."
    rows = []
    for mv in client.search_model_versions("name = 'bench'"):
        run = client.get_run(mv.run_id) if mv.run_id else None
        rows.append({"version": int(mv.version), **(run.data.metrics if run else {})})
    return pd.DataFrame(rows)

if __name__ == "__main__":
    client = setup()
    assert len(versions("bench")) == 200
    times = {"ours": [], "plain": []}
    for _ in range(ROUNDS):
        t = time.perf_counter(); versions("bench"); times["ours"].append(time.perf_counter() - t)
        t = time.perf_counter(); plain(client); times["plain"].append(time.perf_counter() - t)
    ours, theirs = statistics.median(times["ours"]), statistics.median(times["plain"])
    print(f"versions() with 200 versions: ours {ours*1e3:.0f} ms vs search_model_versions + get_run per version "
          f"{theirs*1e3:.0f} ms = {ours/theirs:.3f}x (target <= 0.5x), median of {ROUNDS}")
