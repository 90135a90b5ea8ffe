"""Tracking benchmarks (issue: foundation). Prints ratios; run with `make bench` or `python benchmarks/bench_tracking.py`.

1. One run with 30 params + 30 metrics + tags: `track` vs plain fluent mlflow.log_param/log_metric calls, and vs one
   hand-written MlflowClient.log_batch, interleaved on the same sqlite store. Targets: <= 0.35x fluent, <= 1.2x log_batch.
2. `python -c "import mlops_nb"` vs `python -c "import mlflow"`. Target <= 0.15x.
3. `best_params` over 5,000 runs: milliseconds, and proof it does not fetch every run.
4. A new project's first tracked run with a logged model, as a whole fresh process in a new folder (new store): `track`
   + `run.log_model` vs the same with plain MLflow (set_tracking_uri, start_run, log_metric, mlflow.sklearn.log_model),
   interleaved. Target <= 0.4x (stretch 0.3x): the store is a copy of a migrated template, and the model's
   requirements are known without MLflow's per-call inference.
"""
import os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 15))
tmp = Path(tempfile.mkdtemp(prefix="bench_tracking_"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
os.chdir(tmp)  # no git checkout here: both sides pay the same (nothing) for git context

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlops_nb.tracking import track, experiment_id, best_params, best_run

PARAMS = {f"p{i}": i * 0.5 for i in range(30)}
METRICS = {f"m{i}": i * 1.5 for i in range(30)}
TAGS = {"team": "flights", "stage": "bench"}
exp = experiment_id("bench", create=True)
mlflow.set_experiment(experiment_id=exp)
client = MlflowClient()

def with_track():
    with track("bench", tags=TAGS, params=PARAMS, log_notebook=False) as run: run.log_metrics(METRICS)

def with_fluent():
    with mlflow.start_run(experiment_id=exp, tags=TAGS):
        for k, v in PARAMS.items(): mlflow.log_param(k, v)
        for k, v in METRICS.items(): mlflow.log_metric(k, v)

def with_log_batch():
    run = client.create_run(exp, tags=TAGS)
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in METRICS.items()],
                     params=[Param(k, str(v)) for k, v in PARAMS.items()])
    client.set_terminated(run.info.run_id)

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def interleaved(fns, rounds):
    "Median seconds of each function, run in turn so that machine noise hits all alike."
    for fn in fns: fn()  # warm up
    times = {fn.__name__: [] for fn in fns}
    for _ in range(rounds):
        for fn in fns: times[fn.__name__].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}

def import_time(module, rounds=7):
    "Median wall time of a fresh interpreter importing `module`."
    return statistics.median(timed(lambda: subprocess.run([sys.executable, "-c", f"import {module}"], check=True))
                             for _ in range(rounds))

FIRST_RUN = {
    "mlops_nb": """
import pandas as pd
from sklearn.linear_model import Ridge
from mlops_nb.tracking import track
X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [2.0, 1.0, 0.0, 1.0]})
with track("first", params={"alpha": 1.0}) as run:
    model = Ridge().fit(X, X.a * 2)
    run.log_metrics(rmse=0.1)
    run.log_model(model, X)
""",
    "mlflow": """
import os, mlflow, mlflow.sklearn, pandas as pd
from sklearn.linear_model import Ridge
mlflow.set_tracking_uri(f"sqlite:///{os.getcwd()}/mlflow.db")
X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [2.0, 1.0, 0.0, 1.0]})
mlflow.set_experiment("first")
with mlflow.start_run():
    model = Ridge().fit(X, X.a * 2)
    mlflow.log_param("alpha", 1.0); mlflow.log_metric("rmse", 0.1)
    mlflow.sklearn.log_model(model, name="model", input_example=X.head(3))
"""}

def first_run(side:str)->float:
    "Seconds for a fresh process in a new, empty project folder to log its first run with a model."
    folder = Path(tempfile.mkdtemp(prefix=f"first_{side}_"))
    (folder/"mlops_nb.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return timed(lambda: subprocess.run([sys.executable, "-c", FIRST_RUN[side]], cwd=folder, env=env, check=True, capture_output=True))

def many_runs(n=5000):
    "n finished runs in experiment 'many', written fast with log_batch."
    eid = experiment_id("many", create=True)
    for i in range(n):
        run = client.create_run(eid)
        client.log_batch(run.info.run_id, metrics=[Metric("rmse", (i * 7919 % n) / n, 0, 0)], params=[Param("i", str(i))])
        client.set_terminated(run.info.run_id)

if __name__ == "__main__":
    t = interleaved([with_track, with_fluent, with_log_batch], ROUNDS)
    print(f"one run, 30 params + 30 metrics + 2 tags (median of {ROUNDS}, interleaved):")
    print(f"  track {t['with_track']*1e3:.1f} ms | fluent {t['with_fluent']*1e3:.1f} ms | log_batch {t['with_log_batch']*1e3:.1f} ms")
    print(f"  track / fluent    = {t['with_track']/t['with_fluent']:.3f}x  (target <= 0.35x)")
    print(f"  track / log_batch = {t['with_log_batch'] and t['with_track']/t['with_log_batch']:.3f}x  (target <= 1.2x)")
    ours, theirs = import_time("mlops_nb"), import_time("mlflow")
    print(f"import mlops_nb {ours*1e3:.0f} ms vs import mlflow {theirs*1e3:.0f} ms = {ours/theirs:.3f}x  (target <= 0.15x)")
    first_run("mlops_nb")   # once: the cached store template, as on any machine after the first project
    firsts = {side: [] for side in FIRST_RUN}
    for _ in range(int(os.environ.get("BENCH_FIRST_ROUNDS", 3))):
        for side in FIRST_RUN: firsts[side].append(first_run(side))
    ours, theirs = (statistics.median(firsts[s]) for s in ("mlops_nb", "mlflow"))
    print(f"a new project's first tracked run with log_model (fresh process, new store): mlops_nb {ours:.2f}s vs plain MLflow "
          f"{theirs:.2f}s = {ours/theirs:.3f}x  (target <= 0.4x, stretch 0.3x)")
    many_runs()
    from unittest import mock
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    with mock.patch.object(SqlAlchemyStore, "search_runs", wraps=client._tracking_client.store.search_runs) as spy:
        best = best_params("many", "rmse")
    asked = spy.call_args.kwargs.get("max_results", spy.call_args.args[4] if len(spy.call_args.args) > 4 else None)
    ms = statistics.median(timed(lambda: best_params("many", "rmse")) for _ in range(7)) * 1e3
    print(f"best_params over 5000 runs: {ms:.1f} ms (median of 7), best i={best['i']}, one query asking for {asked} run(s)")
