"""8 processes logging 25 runs each, all starting at once on a store that does not exist yet: no run lost, no
'database is locked', no failed schema migration."""
import subprocess, sys
from conftest import store_runs

WORKER = '''
import sys
from mlops_nb.tracking import track
worker = int(sys.argv[1])
for i in range(25):
    with track("race", params={"worker": worker, "i": i}, tags={"w": worker}) as r:
        r.log_metrics(rmse=worker + i / 100, mae=i)
'''

def test_eight_processes_on_a_fresh_store_lose_nothing(project):
    assert not (project/"mlflow.db").exists()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(w)], cwd=project, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(8)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert "database is locked" not in err and "duplicate column" not in err
    _, runs = store_runs(project, "race")
    assert len(runs) == 200
    assert all(r.info.status == "FINISHED" for r in runs)
    assert sorted((int(r.data.params["worker"]), int(r.data.params["i"])) for r in runs) == [(w, i) for w in range(8) for i in range(25)]
    assert all(r.data.metrics["mae"] == int(r.data.params["i"]) for r in runs)
