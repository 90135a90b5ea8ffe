"The registry: the gate never lets a worse model in, concurrent promotions lose nothing, history survives restarts."
import json, subprocess, sys, time
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from conftest import BIN, POSTGRES, inside_project, run

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    "A project with one logged model (a tiny ridge), shared by the tests of this module."
    with inside_project(tmp_path_factory.mktemp("registry")) as root:
        import pandas as pd
        from sklearn.linear_model import Ridge
        from mlops_nb.tracking import track
        X = pd.DataFrame({"distance": [100.0, 500.0, 1000.0]})
        with track("reg") as r: info = r.log_model(Ridge().fit(X, X.distance / 8), X)
        yield root, info.model_uri

def new_versions(model_uri, name, scores, evaluation="eval-A", metric="rmse", goals=None):
    from mlops_nb.registry import register
    "Register one version per score; their numbers as ints (a tracking server's REST API gives strings, sqlite ints)."
    return [int(register(model_uri, name, metrics={metric: s}, evaluation=evaluation, goals=goals).version) for s in scores]

names = iter(f"m{i}" for i in range(10_000))

# the gate's logic is the same on every store: 25 sequences on sqlite, 8 through a server (each call a REST round trip)
@settings(max_examples=8 if POSTGRES else 25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scores=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=8),
       min_delta=st.sampled_from([0.0, 0.5, 5.0]), mode=st.sampled_from(["min", "max"]))
def test_champion_never_gets_worse_without_force(store, scores, min_delta, mode):
    "A metric declared min or max at registration; the gate reads the direction from the versions."
    from mlops_nb.registry import promote, champion, PromotionRefused
    _, uri = store
    name = next(names)
    held = None
    for version, score in zip(new_versions(uri, name, scores, metric="gain", goals={"gain": mode}), scores):
        try: promote(name, version, metric="gain", min_delta=min_delta)
        except PromotionRefused as e:
            assert e.candidate == score and e.champion == held
            better = score < held - min_delta if mode == "min" else score > held + min_delta
            assert not better      # refused only what was not better by the margin
            continue
        assert held is None or (score < held - min_delta if mode == "min" else score > held + min_delta)
        held = score
        assert float(champion(name).tags["metric.gain"]) == held

def test_gate_refuses_incomparable_or_missing_scores(store):
    from mlops_nb.registry import promote, register, MlopsNbError
    _, uri = store
    a, = new_versions(uri, "cmp", [10.0], evaluation="eval-A")
    b, = new_versions(uri, "cmp", [5.0], evaluation="eval-B")
    c = register(uri, "cmp", metrics={"mae": 1.0}, evaluation="eval-A").version
    promote("cmp", a, metric="rmse")
    with pytest.raises(MlopsNbError, match="evaluated on different or unrecorded data"): promote("cmp", b, metric="rmse")
    with pytest.raises(MlopsNbError, match=f"version {c} has no metric 'rmse' \\(it has: mae\\)"): promote("cmp", c, metric="rmse")
    with pytest.raises(MlopsNbError, match="has no version 99; versions: 1, 2, 3"): promote("cmp", 99, metric="rmse")
    with pytest.raises(MlopsNbError, match="no registered model named 'cpm'"): promote("cpm", 1)

def test_rollback_refuses_a_deleted_version(store):
    from mlops_nb.config import store_client
    from mlops_nb.registry import promote, rollback, MlopsNbError
    _, uri = store
    v1, v2 = new_versions(uri, "del", [10.0, 5.0])
    promote("del", v1, metric="rmse"); promote("del", v2, metric="rmse")
    store_client().delete_model_version("del", str(v1))
    with pytest.raises(MlopsNbError, match="has no version 1"): rollback("del")

PROMOTER = '''
import sys, time
from pathlib import Path
from mlops_nb.registry import promote, PromotionRefused
name, version, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
while not go.exists(): time.sleep(0.005)
try: print(promote(name, version, metric="rmse", reason=f"process {version}")["action"])
except PromotionRefused: print("refused")
'''

@pytest.mark.parametrize("attempt", range(3))
def test_two_processes_promoting_at_once_lose_nothing(store, tmp_path, attempt):
    from mlops_nb.registry import promote, champion, alias_history
    root, uri = store
    name = f"race{attempt}"
    v1, v2, v3 = new_versions(uri, name, [10.0, 8.0, 9.0])
    promote(name, v1, metric="rmse")
    go = tmp_path/"go"
    procs = [subprocess.Popen([sys.executable, "-c", PROMOTER, name, str(v), str(go)], cwd=root, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for v in (v2, v3)]
    time.sleep(3)  # both processes import mlflow and wait at the start line
    go.write_text("go")
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    # judged one after the other: whatever the order, the better version (8.0) ends up champion
    assert int(champion(name).version) == v2
    h = alias_history(name)
    assert len(h) == 3 and set(h.reason[1:]) == {f"process {v2}", f"process {v3}"}
    assert h.action.iloc[-1] in ("promote", "refused") and h.to.tolist()[1:] in ([v2, v3], [v3, v2])

def test_cli_history_and_rollback_survive_restarts(store):
    root, uri = store
    v1, v2, v3 = new_versions(uri, "cli", [10.0, 8.0, 9.0])
    mlops = lambda *a, check=True: run(BIN/"mlops-nb", *a, cwd=root, check=check)
    assert "None -> 1" in mlops("promote", "cli", str(v1), "--metric", "rmse").stdout
    assert "1 -> 2" in mlops("promote", "cli", str(v2), "--metric", "rmse").stdout
    refused = mlops("promote", "cli", str(v3), "--metric", "rmse", check=False)
    assert refused.returncode == 1 and "rmse 9 vs 8 for version 2" in refused.stderr
    events = json.loads(mlops("history", "cli", "--json").stdout)
    assert [e["action"] for e in events] == ["promote", "promote", "refused"]
    assert "2 -> 1 (rollback)" in mlops("rollback", "cli", "--reason", "bad in prod").stdout
    rows = {int(line.split()[0]): line for line in mlops("models", "cli").stdout.splitlines()[1:]}
    assert sorted(rows) == [1, 2, 3] and "champion" in rows[1] and "champion" not in rows[2] + rows[3]
    events = json.loads(mlops("history", "cli", "--json").stdout)
    assert events[-1]["action"] == "rollback" and events[-1]["reason"] == "bad in prod"
    again = mlops("rollback", "cli", check=False)
    assert again.returncode == 2 and "no earlier version" in again.stderr
