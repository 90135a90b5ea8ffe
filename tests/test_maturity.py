"The maturity assessment on real projects: files on disk, real MLflow runs and registered models, no mocks."
import json, subprocess
from pathlib import Path
import mlflow, nbformat, pandas as pd, pytest
from mlflow import MlflowClient
from mlops_nb import maturity as m
from mlops_nb.config import ensure_store, tracking_uri
from mlops_nb.maturity import assess, checklist, load_answers, save_answers

def check(root:Path, item:str, uri:str|None=None)->m.Check:
    "The assessed check of one item."
    return next(c for c in assess(root, uri).checks if c.item.id == item)

@pytest.fixture
def store(project, monkeypatch):
    "The project's own sqlite store, created, and a client on it; the working directory is the project."
    monkeypatch.chdir(project)
    uri = ensure_store(tracking_uri(project))
    mlflow.set_tracking_uri(uri); mlflow.set_registry_uri(uri)
    return MlflowClient(uri, uri)

def saved_model(root)->str:
    "A real (tiny) skops model folder in the project, as the source of registered versions: the gate reads its MLmodel."
    folder = root/"model"
    if not folder.exists():
        import pandas as pd, mlflow.sklearn
        from sklearn.linear_model import Ridge
        X = pd.DataFrame({"distance": [100.0, 500.0]})
        mlflow.sklearn.save_model(Ridge().fit(X, [1.0, 5.0]), folder, pip_requirements=["scikit-learn"], serialization_format="skops")
    return folder.as_uri()

def finished(client, experiment="flights", **tags)->str:
    "A finished run of `experiment` with these tags; its id."
    exp = client.get_experiment_by_name(experiment)
    run = client.create_run(exp.experiment_id if exp else client.create_experiment(experiment), tags=tags)
    client.set_terminated(run.info.run_id)
    return run.info.run_id

# an empty folder

def test_an_empty_folder_is_level_0_and_assessing_it_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a = assess(tmp_path)
    assert a.level == 0 and not any(c.met for c in a.checks)
    assert list(tmp_path.iterdir()) == []
    assert a.to_dict()["level"] == 0 and a.next_steps[0].startswith("level 1: A CI pipeline")

def test_an_empty_project_is_level_0_and_its_store_is_not_created(project):
    a = assess(project)
    assert a.level == 0 and sorted(p.name for p in project.iterdir()) == ["mlops_nb.toml"]
    assert "no tracking store yet" in check(project, "tracking").evidence

def test_a_missing_folder_is_an_error_that_says_so(tmp_path):
    with pytest.raises(m.MlopsNbError, match="no such folder"): assess(tmp_path/"nope")

# file detectors

@pytest.mark.parametrize("ci_file", [".ci/run", ".github/workflows/test.yml", ".github/workflows/ci.yaml", ".gitlab-ci.yml", "Jenkinsfile"])
def test_ci_is_detected_from_each_kind_of_ci_file(project, ci_file):
    assert not check(project, "ci").met
    (project/ci_file).parent.mkdir(parents=True, exist_ok=True)
    (project/ci_file).write_text("make test\n")
    c = check(project, "ci")
    assert c.detected and ci_file in c.evidence

def test_ci_of_the_enclosing_git_repository_counts_for_a_project_in_a_subfolder(tmp_path):
    repo = tmp_path/"repo"
    (repo/".git").mkdir(parents=True); (repo/".ci").mkdir(); (repo/".ci/run").write_text("make test")
    (repo/"demo").mkdir(); (repo/"demo/mlops_nb.toml").write_text("")
    c = check(repo/"demo", "ci")
    assert c.detected and "../.ci/run" in c.evidence
    assert not check(tmp_path/"repo"/"demo", "tests").met

def test_tests_are_detected_from_pytest_files_or_notebooks_with_asserts(project):
    nb = lambda *src: nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in src])
    nbformat.write(nb("x = 1", "print('assert is only a word here')"), project/"explore.ipynb")
    assert not check(project, "tests").met
    (project/"nbs").mkdir(); nbformat.write(nb("def f(): return 2", "assert f() == 2"), project/"nbs/00_core.ipynb")
    assert check(project, "tests").evidence == "notebooks with asserts nbs/00_core.ipynb"
    (project/"tests").mkdir(); (project/"tests/test_core.py").write_text("def test_f(): assert True\n")
    assert check(project, "tests").evidence == "test files tests/test_core.py; notebooks with asserts nbs/00_core.ipynb"

def test_pipeline_needs_a_pipeline_yaml_with_steps(project):
    (project/"pipeline.yaml").write_text("name: x\n")
    assert check(project, "pipeline").evidence == "pipeline.yaml declares no steps"
    (project/"pipeline.yaml").write_text("name: x\nsteps: [{name: train, notebook: train.ipynb}]\n")
    assert check(project, "pipeline").evidence == "pipeline.yaml: 1 step (train)"
    (project/"pipeline.yaml").write_text("steps: [unclosed\n")
    assert "not valid YAML" in check(project, "pipeline").evidence

def test_api_is_detected_from_a_serve_step_or_a_prediction_log(project):
    assert not check(project, "api").met
    (project/"pipeline.yaml").write_text("steps:\n  - {name: train, notebook: train.ipynb}\n  - {name: rest, kind: serve, notebook: serve.ipynb}\n")
    assert check(project, "api").evidence == "pipeline.yaml step 'rest'"
    (project/"pipeline.yaml").unlink()
    (project/m.PREDICTION_LOG).mkdir()
    pd.DataFrame({"prediction": [1.0]}).to_parquet(project/m.PREDICTION_LOG/"batch-1.parquet")
    assert check(project, "api").evidence == "prediction log predictions/ (1 file)"

def test_ab_tests_need_two_variants_in_the_prediction_log(project):
    (project/m.PREDICTION_LOG).mkdir()
    pd.DataFrame({"prediction": [1.0, 2.0], m.VARIANT_COLUMN: ["champion"] * 2}).to_parquet(project/m.PREDICTION_LOG/"a.parquet")
    pd.DataFrame({"prediction": [3.0]}).to_parquet(project/m.PREDICTION_LOG/"b.parquet")   # no variant column: ignored
    assert not check(project, "ab_tests").met
    pd.DataFrame({"prediction": [4.0], m.VARIANT_COLUMN: ["challenger"]}).to_parquet(project/m.PREDICTION_LOG/"c.parquet")
    assert check(project, "ab_tests").evidence == "prediction log with variants challenger (1 rows), champion (2 rows)"

# store detectors: a real sqlite store in the project

def test_tracking_counts_finished_runs_only(project, store):
    run = store.create_run(store.create_experiment("flights"))      # still running
    assert check(project, "tracking").evidence.startswith("no finished runs")
    store.set_terminated(run.info.run_id)
    assert check(project, "tracking").evidence == f"1 finished run in 1 experiment of {tracking_uri(project)}"

def test_reproducibility_needs_a_git_commit_and_a_data_fingerprint_on_the_same_run(project, store):
    finished(store, **{m.GIT_COMMIT_TAG: "abcdef123456"})
    finished(store, **{"mlops_nb.data.train": "f00"})
    assert check(project, "reproducible").evidence == "1 run record a git commit, 1 a data fingerprint (mlops_nb.data.*), none both"
    run_id = finished(store, **{m.GIT_COMMIT_TAG: "abcdef123456", "mlops_nb.data.train": "f00"})
    assert check(project, "reproducible").evidence == f"1 run record a git commit and a data fingerprint, e.g. run {run_id[:8]} (commit abcdef1, data train)"

def test_the_registry_needs_a_version_with_its_metrics(project, store):
    store.create_registered_model("flights")
    store.create_model_version("flights", saved_model(project), run_id=finished(store))
    assert "none with its metrics" in check(project, "registry").evidence
    store.create_model_version("flights", saved_model(project), run_id=finished(store), tags={"metric.rmse": "9.5", "metric.mae": "7"})
    assert check(project, "registry").evidence == "1 registered model; 1 of 2 versions record metrics, e.g. flights v2 (mae, rmse)"

@pytest.mark.parametrize("tags", [{m.PAPERMILL_TAG: "true"}, {m.TAG_EXECUTION: "0123abcd"}])
def test_automated_training_needs_a_version_from_a_papermill_run(project, store, tags):
    store.create_registered_model("flights")
    store.create_model_version("flights", saved_model(project), run_id=finished(store))
    assert not check(project, "automated_training").met
    run_id = finished(store, **tags, **{m.TAG_NOTEBOOK: str(project/"train.ipynb")})
    store.create_model_version("flights", saved_model(project), run_id=run_id)
    assert check(project, "automated_training").evidence == f"flights v2 comes from papermill run {run_id[:8]} of train.ipynb"

def test_champion_and_challenger_aliases_set_by_the_registry_module(project, store):
    from mlops_nb.registry import promote
    store.create_registered_model("flights")
    for _ in range(2): store.create_model_version("flights", saved_model(project), run_id=finished(store), tags={"metric.rmse": "9"})
    assert not check(project, "champion").met and not check(project, "ab_tests").met
    promote("flights", 1)
    assert check(project, "champion").evidence == "flights@champion = v1"
    promote("flights", 2, alias="challenger")
    assert check(project, "ab_tests").evidence == "flights@challenger = v2"

def test_monitoring_needs_runs_in_an_experiment_tagged_monitoring(project, store):
    exp = store.create_experiment("flights-monitoring", tags={m.KIND_TAG: m.KIND_MONITORING})
    assert not check(project, "monitoring").met
    store.create_run(exp)    # a batch being monitored right now counts too
    assert check(project, "monitoring").evidence == "monitoring experiment 'flights-monitoring': 1 run"

def test_retraining_is_detected_from_tagged_runs_or_the_alias_history(project, store):
    from mlops_nb.registry import promote
    store.create_registered_model("flights")
    for _ in range(2): store.create_model_version("flights", saved_model(project), run_id=finished(store), tags={"metric.rmse": "9"})
    promote("flights", 1, reason="first model")
    assert not check(project, "retraining").met
    promote("flights", 2, force=True, reason="Retraining on March after drift")
    assert check(project, "retraining").evidence == "flights: forced to v2 (Retraining on March after drift)"
    finished(store, "retrain", **{m.KIND_TAG: m.KIND_RETRAINING})
    assert check(project, "retraining").evidence.startswith("1 retraining run (mlops_nb.kind = retraining); flights: forced")

def test_an_explicit_tracking_uri_is_read_instead_of_the_projects(project, tmp_path):
    other = ensure_store(f"sqlite:///{tmp_path/'other.db'}")
    finished(MlflowClient(other, other))
    assert not check(project, "tracking").met
    assert check(project, "tracking", other).evidence == f"1 finished run in 1 experiment of {other}"
    assert not (project/"mlflow.db").exists()

# a whole project

def git(root, *args): subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)

def test_a_project_with_ci_tests_tracked_papermill_runs_a_champion_and_a_pipeline_reaches_level_2(project, store):
    from sklearn.linear_model import LinearRegression
    from mlops_nb.registry import promote, register_best
    from mlops_nb.tracking import track
    (project/".ci").mkdir(); (project/".ci/run").write_text("#!/bin/sh\nmake test\n")
    (project/"tests").mkdir(); (project/"tests/test_model.py").write_text("def test_fit(): assert True\n")
    (project/"pipeline.yaml").write_text("name: flights\nsteps:\n  - {name: prepare, notebook: prepare.ipynb}\n"
                                         "  - {name: train, notebook: train.ipynb, needs: [prepare]}\n")
    git(project, "init", "-q"); git(project, "add", "."); git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    df = pd.DataFrame({"distance": [100.0, 200.0, 300.0, 400.0], "air_time": [20.0, 35.0, 52.0, 66.0]})
    for alpha in (0.1, 1.0):   # what a papermill-executed training notebook records
        with track("flights", params={"alpha": alpha}, tags={m.PAPERMILL_TAG: "true"}, inputs={"train": df}) as run:
            model = LinearRegression().fit(df[["distance"]], df.air_time)
            run.log_metrics(rmse=alpha)
            run.log_model(model, df[["distance"]])
    mv = register_best("flights", "rmse", "flights")
    promote("flights", mv.version)
    a = assess(project)
    met = {c.item.id for c in a.checks if c.met}
    assert {"ci", "tests", "tracking", "reproducible", "pipeline", "registry", "automated_training", "champion"} <= met
    assert a.level >= 2 and a.level == 2    # level 3 also needs the model served behind an API
    assert a.next_steps[0].startswith("level 3: The model is served behind an API")
    out = json.loads(json.dumps(a.to_dict()))
    assert out["level"] == 2 and [i["id"] for i in out["items"]] == [i.id for i in m.ITEMS]
    assert "Level 2: Automated training" in a.to_text() and "flights@champion = v1" in a.to_text()

# manual answers

def test_answers_saved_from_the_widget_are_merged_by_the_next_assess(project):
    ui = checklist(assess(project))
    before = ui.level.value
    for item in ("ci", "tests", "releases"): ui.boxes[item].value = True
    assert ui.level.value != before and "Level 1: DevOps but no MLOps" in ui.level.value
    ui.save.click()
    assert load_answers(project) == {i.id: i.id in ("ci", "tests", "releases") for i in m.ITEMS}
    again = assess(project)
    assert again.level == 1 and check(project, "releases").evidence == "ticked by hand (maturity.json)"
    assert checklist(again).boxes["releases"].value is True
    save_answers({"tests": False}, project)
    assert assess(project).level == 0

def test_detected_items_are_locked_in_the_widget_and_not_saved(project):
    (project/"Jenkinsfile").write_text("pipeline {}")
    ui = checklist(assess(project))
    assert ui.boxes["ci"].value and ui.boxes["ci"].disabled and "CI configuration: Jenkinsfile" in ui.boxes["ci"].tooltip
    ui.save.click()
    assert "ci" not in load_answers(project)

def test_a_broken_answers_file_is_an_error_that_says_where(project):
    (project/m.ANSWERS_FILE).write_text("{not json")
    with pytest.raises(m.MlopsNbError, match="maturity.json is not a JSON object"): assess(project)

def test_the_cli_command_when_present(project):
    from click.testing import CliRunner
    from mlops_nb.cli import main
    if "maturity" not in main.commands: pytest.skip("the `mlops-nb maturity` command is not in mlops_nb.cli yet")
    done = CliRunner().invoke(main, ["maturity", str(project), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["level"] == 0
    done = CliRunner().invoke(main, ["maturity", str(project)])
    assert done.exit_code == 0 and "Level 0: No MLOps" in done.output and "Next steps:" in done.output
