"The mlops-nb command as a user runs it: a real process, real store, real data."
import json
from conftest import BIN, run, store_runs

def test_demo_runs_a_tracked_sweep_and_prints_the_best_parameters(tmp_path, project):
    done = run(BIN/"mlops-nb", "demo", "--workdir", tmp_path/"demo", cwd=tmp_path)
    assert "best parameters (validation RMSE" in done.stdout and "mlflow ui --backend-store-uri" in done.stdout
    _, runs = store_runs(tmp_path/"demo", "flights")
    assert len(runs) == 8 and all(r.info.status == "FINISHED" for r in runs)
    best = min(runs, key=lambda r: r.data.metrics["rmse"])
    assert 8 < best.data.metrics["rmse"] < 15     # January -> February air time, minutes
    assert best.data.tags["mlops_nb.data.train"] == runs[0].data.tags["mlops_nb.data.train"]  # same data, same fingerprint

    found = json.loads(run(BIN/"mlops-nb", "best", "flights", "--metric", "rmse", "--json", cwd=tmp_path/"demo").stdout)
    assert found["run_id"] == best.info.run_id and found["value"] == best.data.metrics["rmse"]
    assert found["params"]["family"] == best.data.params["family"]
    table = run(BIN/"mlops-nb", "runs", "flights", cwd=tmp_path/"demo").stdout
    assert len(table.splitlines()) == 9 and "rmse" in table

def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path, project):
    cases = [
        (["best", "nosuch", "--metric", "rmse"], "no experiment named 'nosuch'"),
        (["best", "x", "--metric", "rmse", "--mode", "lowest"], "Invalid value for '--mode'"),
        (["demo", "--workdir", tmp_path/"d", "--train-month", "13"], "months must be whole numbers from 1 to 12"),
        (["demo", "--workdir", tmp_path/"d", "--train-month", "5", "--valid-month", "2"], "must come before"),
    ]
    for args, message in cases:
        done = run(BIN/"mlops-nb", *args, cwd=project, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path/"d").exists()   # refused before anything was written
