"Shared fixtures: a fresh project folder with its own store, and notebooks written by the tests."
import contextlib, os, subprocess, sys
from pathlib import Path
import nbformat, pytest

BIN = Path(sys.executable).parent

@pytest.fixture
def project(tmp_path, monkeypatch):
    "An empty project (marked by mlops_nb.toml) whose store is <project>/mlflow.db; MLFLOW_TRACKING_URI unset."
    root = tmp_path/"project"
    root.mkdir()
    (root/"mlops_nb.toml").write_text("")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")  # kernels and CLIs of this venv
    return root

@contextlib.contextmanager
def inside_project(root:Path):
    "Work in project `root` (its own store, MLFLOW_TRACKING_URI unset), then restore the working directory and the URI."
    root.mkdir(parents=True, exist_ok=True)
    (root/"mlops_nb.toml").write_text("")
    saved_cwd, saved_uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(root)
    try: yield root
    finally:
        os.chdir(saved_cwd)
        if saved_uri: os.environ["MLFLOW_TRACKING_URI"] = saved_uri

def write_notebook(path:Path, *cells:str, parameters:str|None=None)->Path:
    "A notebook with an optional papermill `parameters` cell first, then code cells."
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path

def run(*args, cwd=None, check=True, env=None):
    "Run a command of this venv, capture its output."
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and done.returncode: raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done

def store_runs(root:Path, experiment:str):
    "Every run of `experiment` in the project's sqlite store, read with MLflow's own client."
    import mlflow
    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([exp.experiment_id]) if exp else [])
