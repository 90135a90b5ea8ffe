"""One tracked notebook, run three ways, lands in one store: executed in its own folder as JupyterLab does, by plain
papermill from another folder with -p parameters, and by papermill with the mlops_nb engine."""
from pathlib import Path
import nbformat, pytest
from conftest import BIN, run, store_runs, write_notebook

TRAIN = '''
from mlops_nb.tracking import track
with track("nbexp", tags={"how": how}) as r:
    r.log_metrics(rmse=10 + alpha)
'''

@pytest.fixture
def notebook(project):
    return write_notebook(project/"nbs"/"train.ipynb", TRAIN, parameters='alpha = 0.1\nhow = "lab"\n')

def test_lab_style_execution_logs_to_project_store(project, notebook, monkeypatch):
    "JupyterLab runs the kernel in the notebook's folder and sets JPY_SESSION_NAME to the notebook's path."
    from nbclient import NotebookClient
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    nb = nbformat.read(notebook, 4)
    NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}).execute()
    _, runs = store_runs(project, "nbexp")
    assert len(runs) == 1
    r = runs[0]
    assert r.data.metrics == {"rmse": 10.1} and r.data.tags["how"] == "lab"
    assert r.data.tags["mlops_nb.notebook"] == str(notebook)
    assert "mlops_nb.papermill" not in r.data.tags and r.data.params == {}   # nothing was injected
    assert not (notebook.parent/"mlflow.db").exists()                        # the project root holds the store

def test_plain_papermill_from_another_folder_records_parameters(project, notebook, tmp_path):
    elsewhere = tmp_path/"elsewhere"
    elsewhere.mkdir()
    run(BIN/"papermill", notebook, elsewhere/"out.ipynb", "-p", "alpha", "0.5", "-p", "how", "papermill",
        "--cwd", notebook.parent, cwd=elsewhere)
    _, runs = store_runs(project, "nbexp")
    assert len(runs) == 1
    r = runs[0]
    assert r.data.params == {"alpha": "0.5", "how": "papermill"}
    assert r.data.tags["mlops_nb.papermill"] == "true" and r.data.metrics == {"rmse": 10.5}
    assert not (elsewhere/"mlflow.db").exists()

def test_engine_attaches_notebook_path_and_executed_notebook(project, notebook, tmp_path):
    out = tmp_path/"out"/"train-executed.ipynb"
    out.parent.mkdir()
    run(BIN/"papermill", "--engine", "mlops_nb", notebook, out, "-p", "alpha", "2", "-p", "how", "engine",
        "--cwd", notebook.parent, cwd=tmp_path)
    client, runs = store_runs(project, "nbexp")
    assert len(runs) == 1
    r = runs[0]
    assert r.data.params == {"alpha": "2", "how": "engine"} and r.data.tags["mlops_nb.notebook"] == str(notebook)
    assert r.data.tags["mlops_nb.execution"]
    local = Path(client.download_artifacts(r.info.run_id, "notebook/train-executed.ipynb", str(tmp_path)))
    executed = nbformat.read(local, 4)
    assert executed.metadata.papermill.parameters == {"alpha": 2, "how": "engine"}
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)

def test_all_three_ways_share_one_store(project, notebook, tmp_path, monkeypatch):
    test_lab_style_execution_logs_to_project_store(project, notebook, monkeypatch)
    run(BIN/"papermill", notebook, tmp_path/"a.ipynb", "-p", "how", "papermill", "--cwd", notebook.parent, cwd=tmp_path)
    run(BIN/"papermill", "--engine", "mlops_nb", notebook, tmp_path/"b.ipynb", "-p", "how", "engine",
        "--cwd", notebook.parent, cwd=tmp_path)
    _, runs = store_runs(project, "nbexp")
    assert sorted(r.data.tags["how"] for r in runs) == ["engine", "lab", "papermill"]

def test_failing_notebook_run_is_failed_with_the_error_notebook_attached(project, tmp_path):
    nb = write_notebook(project/"fail.ipynb", '''
from mlops_nb.tracking import track
with track("nbexp") as r:
    r.log_params(alpha=alpha)
    raise ValueError("bad data in month 13")
''', parameters="alpha = 1\n")
    done = run(BIN/"papermill", "--engine", "mlops_nb", nb, tmp_path/"fail-out.ipynb", "--cwd", project,
               cwd=tmp_path, check=False)
    assert done.returncode == 1 and "bad data in month 13" in done.stderr
    client, runs = store_runs(project, "nbexp")
    (r,) = runs
    assert r.info.status == "FAILED" and "bad data in month 13" in r.data.tags["mlops_nb.error"]
    assert r.data.params == {"alpha": "1"}
    local = client.download_artifacts(r.info.run_id, "notebook/fail-out.ipynb", str(tmp_path))
    assert "bad data in month 13" in Path(local).read_text()
    assert (tmp_path/"fail-out.ipynb").exists()   # papermill's own output with the error cell is kept too
