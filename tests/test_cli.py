"The mlops-nb command as a user runs it: real processes, a real store, the real flights data."
import json, re
from conftest import BIN, run, store_runs

def test_demo_runs_the_flights_pipeline_then_serves_it_from_the_cache(tmp_path, project):
    first = run(BIN/"mlops-nb", "demo", "--workdir", tmp_path/"demo", cwd=tmp_path)
    assert "champion: flights v1" in first.stdout and "mlflow ui --backend-store-uri" in first.stdout
    rmse = float(re.search(r"champion: flights v1, validation RMSE ([\d.]+) min", first.stdout)[1])
    assert 8 < rmse < 15                                   # January -> February air time, in minutes
    _, runs = store_runs(tmp_path/"demo", "flights")
    train = [r for r in runs if r.data.tags.get("mlops_nb.step") == "train"]
    assert len(train) == 6 and all("rmse" in r.data.metrics for r in train)
    assert round(min(r.data.metrics["rmse"] for r in train), 2) == rmse   # the champion is the best grid point

    second = run(BIN/"mlops-nb", "demo", "--workdir", tmp_path/"demo", cwd=tmp_path)
    steps = {line.split()[0]: line.split()[1] for line in second.stdout.splitlines()
             if line.split()[:1] and line.split()[0] in ("prepare", "vectorize", "train", "register")}
    assert steps == {"prepare": "cached", "vectorize": "cached", "train": "cached", "register": "cached"}

    found = json.loads(run(BIN/"mlops-nb", "best", "flights", "--metric", "rmse", "--json", cwd=tmp_path/"demo").stdout)
    assert round(found["value"], 2) == rmse
    assert "champion" in run(BIN/"mlops-nb", "models", "flights", cwd=tmp_path/"demo").stdout

def test_new_project_runs_as_is(tmp_path, project):
    run(BIN/"mlops-nb", "new", tmp_path/"fresh", cwd=tmp_path)
    tested = run(BIN/"python", "-m", "pytest", "-q", "tests", cwd=tmp_path/"fresh")
    assert "2 passed" in tested.stdout
    again = run(BIN/"mlops-nb", "new", tmp_path/"fresh", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "not an empty folder" in again.stderr

def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path, project):
    (tmp_path/"afile").write_text("x")
    cases = [
        (["best", "nosuch", "--metric", "rmse"], "no experiment named 'nosuch'"),
        (["best", "x", "--metric", "rmse", "--mode", "lowest"], "Invalid value for '--mode'"),
        (["demo", "--workdir", tmp_path/"d", "--train-month", "13"], "months must be whole numbers from 1 to 12"),
        (["demo", "--workdir", tmp_path/"d", "--train-month", "5", "--valid-month", "2"], "must come before"),
        (["demo", "--workdir", tmp_path/"afile"], "is a file"),
    ]
    for args, message in cases:
        done = run(BIN/"mlops-nb", *args, cwd=project, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path/"d").exists() and (tmp_path/"afile").read_text() == "x"   # refused before anything was written
