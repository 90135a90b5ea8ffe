"The mlops-nb command as a user runs it: real processes, a real store, the real flights data."
from conftest import BIN, run

def test_a_new_flights_project_is_valid_as_generated(tmp_path, project):
    run(BIN/"mlops-nb", "new", tmp_path/"fresh", cwd=tmp_path)
    tested = run(BIN/"python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", "-k", "is_valid", cwd=tmp_path/"fresh")
    assert "1 passed" in tested.stdout
    again = run(BIN/"mlops-nb", "new", tmp_path/"fresh", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "not an empty folder" in again.stderr

def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path, project):
    (tmp_path/"afile").write_text("x")
    cases = [
        (["best", "nosuch", "--metric", "rmse"], "mlops-nb init"),               # a read-only command creates no store
        (["best", "x", "--metric", "rmse", "--mode", "lowest"], "Invalid value for '--mode'"),
        (["demo", "--workdir", tmp_path/"d", "--train-month", "13"], "months must be whole numbers from 1 to 12"),
        (["demo", "--workdir", tmp_path/"d", "--train-month", "5", "--valid-month", "2"], "must come before"),
        (["demo", "--workdir", tmp_path/"afile"], "is a file"),
        (["run", "--force", "trian"], "no step 'trian'"),
        (["new", tmp_path/"n", "--template", "blnak"], "did you mean 'blank'?"),
    ]
    (project/"pipeline.yaml").write_text("name: p\nsteps:\n  - {name: train, notebook: train.ipynb}\n")
    from conftest import write_notebook
    write_notebook(project/"train.ipynb", "x = 1", parameters="")
    for args, message in cases:
        done = run(BIN/"mlops-nb", *args, cwd=project, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path/"d").exists() and not (tmp_path/"n").exists() and (tmp_path/"afile").read_text() == "x"   # refused before anything was written
    assert not (project/"mlflow.db").exists()
    run(BIN/"python", "-c", "from mlops_nb.config import use_store; use_store('.')", cwd=project)
    done = run(BIN/"mlops-nb", "best", "nosuch", "--metric", "rmse", cwd=project, check=False)
    assert done.returncode == 2 and "no experiment named 'nosuch'" in done.stderr, done.stderr
