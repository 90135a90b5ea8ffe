"""mlops_nb on a data scientist's own project, not the flights demo: a classifier on scikit-learn's wine data logged
with plain MLflow calls inside `track`, a higher-is-better metric and a custom one; read-only commands in a folder that
is no project; a typo under papermill; a model served by its name."""
import json, math, os, socket
import httpx, mlflow, mlflow.sklearn, pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from conftest import BIN, inside_project, run, write_notebook
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

X, y = load_wine(return_X_y=True, as_frame=True)
TRAIN, TEST = slice(0, None, 2), slice(1, None, 2)

def mlops(*args, cwd, check=True):
    return run(BIN/"mlops-nb", *args, cwd=cwd, check=check)

@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """Three classifiers of the wine data, each logged the plain MLflow way inside `track` (requirements given: MLflow's
    inference of them, a subprocess per model, is not under test here): a strong, a crippled and
    a middle one (C), with balanced accuracy (known: higher is better), a business `profit` declared max, and `lift`
    declared nowhere. Yields the project folder and {C: ModelInfo}."""
    from mlops_nb.tracking import track
    with inside_project(tmp_path_factory.mktemp("wine")) as root:
        infos, scores = {}, {}
        for C, profit in ((1.0, 120.0), (0.0001, 20.0), (0.01, 80.0)):
            with track("wine", params={"C": C}, inputs={"test": X[TEST].assign(label=y[TEST])}, goals={"profit": "max"}):
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(X[TRAIN], y[TRAIN])
                scores[C] = balanced_accuracy_score(y[TEST], clf.predict(X[TEST]))
                mlflow.log_metric("balanced_accuracy", scores[C])
                mlflow.log_metric("profit", profit)
                mlflow.log_metric("lift", 1 / (1 + C))
                infos[C] = mlflow.sklearn.log_model(clf, name="model", input_example=X.head(3), pip_requirements=["scikit-learn"])
        assert scores[0.0001] < min(scores[1.0], scores[0.01])              # the crippled one is worse
        yield root, infos, scores

def test_best_picks_the_highest_of_a_higher_is_better_metric_and_refuses_an_undeclared_one(wine):
    root, _, scores = wine
    found = json.loads(mlops("best", "wine", "-m", "balanced_accuracy", "--json", cwd=root).stdout)
    assert (found["value"], found["mode"]) == (max(scores.values()), "max"), found
    found = json.loads(mlops("best", "wine", "-m", "profit", "--json", cwd=root).stdout)
    assert (found["params"]["C"], found["value"], found["mode"]) == (1.0, 120.0, "max"), found
    refused = mlops("best", "wine", "-m", "lift", cwd=root, check=False)
    assert refused.returncode == 2 and "which way is better for metric 'lift'" in refused.stderr and "Traceback" not in refused.stderr
    assert json.loads(mlops("best", "wine", "-m", "lift", "--mode", "min", "--json", cwd=root).stdout)["params"]["C"] == 1.0
    registered = mlops("register", "wine", "-m", "balanced_accuracy", "--name", "wine-cli", "--promote", cwd=root).stdout
    assert registered.startswith("wine-cli v1 from run ") and f"balanced_accuracy = {max(scores.values()):.6g}" in registered, registered
    assert "champion" in mlops("models", "wine-cli", cwd=root).stdout

def test_register_a_logged_model_uri_carries_all_run_metrics_and_the_gate_refuses_worse(wine):
    from mlops_nb.registry import champion, promote, register, PromotionRefused
    root, infos, _ = wine
    with inside_project(root):
        good, bad = register(infos[1.0].model_uri, "wine"), register(infos[0.0001].model_uri, "wine")
        assert {"metric.balanced_accuracy", "metric.profit", "metric.lift", "mlops_nb.evaluation"} <= set(good.tags)
        assert good.tags["mlops_nb.goal.profit"] == "max" and "mlops_nb.goal.lift" not in good.tags
        linked = {m.key for m in mlflow.MlflowClient().get_logged_model(infos[1.0].model_id).metrics}
        assert linked == {"balanced_accuracy", "profit", "lift"}             # the MLflow UI's model page shows them
        promote("wine", good.version, metric="balanced_accuracy")
        for how in ({}, {"evaluation_data": (X[TEST], y[TEST])}, {"metric": "roc_auc_ovr", "evaluation_data": (X[TEST], y[TEST])}):
            with pytest.raises(PromotionRefused): promote("wine", bad.version, **({"metric": "balanced_accuracy"} | how))
        with pytest.raises(Exception, match="which way is better for metric 'lift'"): promote("wine", bad.version, metric="lift")
        with pytest.raises(Exception, match="contradicting directions"): promote("wine", bad.version, metric="profit", mode="min")
        assert champion("wine").version == good.version

@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scores=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=6), goal=st.sampled_from(["min", "max"]),
       min_delta=st.sampled_from([0.0, 1.0, 1000.0]), attack=st.sampled_from([None, "nan", "inf", "-inf", "opposite mode", "negative margin"]))
def test_the_champion_never_gets_worse_without_force(wine, scores, goal, min_delta, attack):
    "Random scores of a custom metric declared min or max, with the attacks that once got around the gate mixed in."
    from mlops_nb.registry import champion, promote, register, PromotionRefused, MlopsNbError
    root, infos, _ = wine
    name = f"gate-{os.urandom(4).hex()}"
    bad_score = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(attack)
    with inside_project(root):
        files = mlflow.MlflowClient().get_logged_model(infos[1.0].model_id).artifact_location   # a new version per register
        held = None
        for score in scores + ([bad_score] if bad_score is not None else []):
            v = register(files, name, metrics={"gain": score}, evaluation="week-1", goals={"gain": goal})
            kw = {"mode": "max" if goal == "min" else "min"} if attack == "opposite mode" else {"min_delta": -5.0} if attack == "negative margin" else {}
            try: promote(name, v.version, **({"metric": "gain", "min_delta": min_delta} | kw))
            except (PromotionRefused, MlopsNbError): continue
            assert held is None or (score < held - min_delta if goal == "min" else score > held + min_delta), (held, score)
            assert math.isfinite(score) and not kw
            held = score
        if held is not None: assert float(champion(name).tags["metric.gain"]) == held

def test_read_only_commands_outside_a_project_leave_the_folder_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    empty = tmp_path/"not-a-project"
    empty.mkdir()
    for args in (["runs", "wine"], ["best", "wine", "-m", "accuracy"], ["models", "wine"], ["history", "wine"]):
        done = mlops(*args, cwd=empty, check=False)
        assert done.returncode == 2 and "no MLflow store" in done.stderr and "mlops-nb init" in done.stderr, (args, done.stderr)
    assert mlops("maturity", cwd=empty).returncode == 0
    assert list(empty.iterdir()) == []                                      # nothing written, no mlflow.db

def test_papermill_with_the_engine_refuses_a_parameter_typo_before_any_kernel(project):
    nb = write_notebook(project/"svm.ipynb", "from mlops_nb.tracking import track\nwith track('svm') as run: run.log_metrics(score=C)",
                        parameters="C = 1.0")
    typo = run(BIN/"papermill", "--engine", "mlops_nb", nb, project/"out.ipynb", "-p", "CC", "0.5", cwd=project, check=False)
    assert typo.returncode != 0 and "declares no parameter 'CC'; did you mean 'C'?" in typo.stderr
    assert not (project/"out.ipynb").exists() and not (project/"mlflow.db").exists()     # nothing ran, nothing written
    ok = run(BIN/"papermill", "--engine", "mlops_nb", nb, project/"out.ipynb", "-p", "C", "0.5", cwd=project)
    assert ok.returncode == 0 and (project/"out.ipynb").exists()

def _free_port()->int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def test_serve_a_model_by_its_name(wine):
    from mlops_nb.registry import promote, register
    root, infos, _ = wine
    with inside_project(root): promote("wine", register(infos[1.0].model_uri, "wine").version, metric="balanced_accuracy")
    missing = mlops("serve", "nosuch", "--port", str(_free_port()), cwd=root, check=False)
    assert missing.returncode == 2 and "nosuch" in missing.stderr
    from mlops_nb.serving import start_service
    with start_service("wine", "--no-log", cwd=root) as service:
        answer = httpx.post(f"{service.url}/invocations", json={"dataframe_records": X.head(4).to_dict("records")}, timeout=30)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 4
        assert httpx.get(f"{service.url}/version", timeout=5).json()["name"] == "wine"
    assert service.process.returncode == 0
