"""The Dask executor end to end: real LocalCluster worker processes, real kernels, a real MLflow store, workers killed
with SIGKILL. One cluster serves the module (it takes seconds to start); tests that kill workers wait for the nanny
to bring them back."""
import json, os, signal, socket, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pandas as pd, pytest, yaml
from conftest import inside_project, store_runs, write_notebook
from mlops_nb.config import MlopsNbError
from mlops_nb.pipeline import PipelineFailed, grid_table, run_pipeline

pytest.importorskip("distributed")
from mlops_nb.dask_executor import DaskExecutor

@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    """A DaskExecutor on its own LocalCluster of 2 worker processes. The workers start with MLFLOW_TRACKING_URI
    pointing elsewhere, as a worker started on another machine might: they must use the runner's store anyway."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")/"mlflow.db"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{elsewhere}"
    try: ex = DaskExecutor(workers=2)
    finally:
        if saved is None: os.environ.pop("MLFLOW_TRACKING_URI")
        else: os.environ["MLFLOW_TRACKING_URI"] = saved
    ex.elsewhere = elsewhere
    yield ex
    ex.shutdown()

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "One project (one store: creating a store costs seconds) for the module; each test runs its own pipelines in it."
    with inside_project(tmp_path_factory.mktemp("dask")/"project") as root: yield root

def two_workers(executor)->dict:
    "Worker address -> pid, once both workers are up (after a kill, the nanny restarts one)."
    executor.client.wait_for_workers(2, timeout=120)
    return executor.client.run(os.getpid)

def statuses(result, step:str)->list: return [o.status for o in result.steps[step].outcomes]

def records(root:Path, pipeline:str)->dict:
    "Cache record file name -> its content."
    folder = root/".mlops_nb"/"cache"/pipeline
    return {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")} if folder.is_dir() else {}

def grid_pipeline(root:Path, name:str, notebook:str, grid:dict, params:dict|None=None, after:list=())->Path:
    "A pipeline `name`.yaml whose step `point` runs `notebook` over `grid`, then the steps `after`."
    (root/f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "steps": [
        {"name": "point", "notebook": notebook, "grid": grid, "params": params or {}}, *after]}))
    return root/f"{name}.yaml"

def test_8_point_grid_on_dask_gives_the_local_executors_table_and_caches_alike(project, executor):
    write_notebook(project/"point.ipynb", "from mlops_nb.tracking import track\nwith track() as run: run.log_metrics(score=a * 10 + b / 4)",
                   parameters="a = 0\nb = 0")
    sweep = grid_pipeline(project, "sweep", "point.ipynb", {"a": list(range(4)), "b": list(range(2))})
    table = lambda result: grid_table(result, "point").drop(columns="run_id").sort_values(["a", "b"], ignore_index=True)

    on_dask = run_pipeline(sweep, executor=executor, progress=False)
    assert statuses(on_dask, "point") == ["ran"] * 8
    again = run_pipeline(sweep, executor=executor, progress=False)
    assert statuses(again, "point") == ["cached"] * 8 and again.steps["point"].run_ids == on_dask.steps["point"].run_ids
    local = run_pipeline(sweep, force=True, jobs=2, progress=False)
    assert statuses(local, "point") == ["ran"] * 8

    dask_table = table(on_dask)
    pd.testing.assert_frame_equal(dask_table, table(local))
    assert len(dask_table) == 8 and (dask_table.score == dask_table.a.astype(int) * 10 + dask_table.b.astype(int) / 4).all()
    assert run_pipeline(sweep, executor=executor, progress=False).steps["point"].run_ids == local.steps["point"].run_ids  # local's records serve Dask
    _, runs = store_runs(project, "sweep")
    points = [r for r in runs if r.data.tags.get("mlops_nb.step") == "point"]
    assert len(points) == 16 and all(r.info.status == "FINISHED" and "score" in r.data.metrics for r in points)
    assert not executor.elsewhere.exists()  # the workers' own MLflow calls went to the runner's store

HOLD = """import os, time, uuid
from pathlib import Path
Path(marks, f"{i}-{os.getppid()}-{uuid.uuid4().hex[:6]}").write_text("")  # point, worker pid, attempt
while i == 3 and Path(hold).exists(): time.sleep(0.1)                     # point 3 waits until released
time.sleep(0.3)"""

def test_a_worker_killed_mid_sweep_loses_no_finished_point_and_dask_reruns_its_notebook(project, executor):
    marks, hold = project/"marks", project/"hold"
    marks.mkdir()
    hold.write_text("")
    write_notebook(project/"slow.ipynb", HOLD, parameters="i = 0\nmarks = ''\nhold = ''")
    sweep = grid_pipeline(project, "kill", "slow.ipynb", {"i": list(range(8))}, {"marks": str(marks), "hold": str(hold)})
    pids = set(two_workers(executor).values())
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_pipeline, sweep, executor=executor, progress=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (list(marks.glob("3-*")) and len(records(project, "kill")) >= 2): time.sleep(0.1)
        finished = records(project, "kill")
        [victim] = list(marks.glob("3-*"))
        assert len(finished) >= 2 and "point[3].json" not in finished
        worker = int(victim.name.split("-")[1])
        assert worker in pids
        os.kill(worker, signal.SIGKILL)  # point 3 is still waiting in its kernel on that worker
        hold.unlink()
        result = running.result(timeout=300)

    # Dask rescheduled the killed worker's tasks: the sweep completed, point 3 ran twice, every other point once
    assert result.ok and statuses(result, "point") == ["ran"] * 8
    attempts = sorted(p.name.split("-")[0] for p in marks.iterdir())
    assert attempts == sorted([str(i) for i in range(8)] + ["3"])
    assert {p.name.split("-")[1] for p in marks.glob("3-*")} - {str(worker)}        # the second attempt ran on another worker
    after = records(project, "kill")
    assert all(after[name] == record for name, record in finished.items())         # finished points untouched
    _, runs = store_runs(project, "kill")
    assert sorted(r.info.status for r in runs if "mlops_nb.point" in r.data.tags) == ["FINISHED"] * 8
    rerun = run_pipeline(sweep, executor=executor, progress=False)
    assert statuses(rerun, "point") == ["cached"] * 8 and len(list(marks.iterdir())) == 9  # no kernel ran again
    assert worker not in two_workers(executor).values()                           # the nanny started a new worker

SUICIDE = "import os, signal\nif os.path.exists(flag): os.kill(os.getppid(), signal.SIGKILL)  # kill the worker running this kernel"

def test_a_notebook_whose_worker_dies_fails_as_killed_worker_and_resume_runs_it(project):
    "A cluster of its own that gives up on a task at the first worker death (Dask's default reschedules it 3 times)."
    write_notebook(project/"doomed.ipynb", SUICIDE, parameters="flag = ''")
    write_notebook(project/"after.ipynb", "x = 1", parameters="x = 0")
    (project/"doomed.yaml").write_text(yaml.safe_dump({"name": "doomed", "steps": [
        {"name": "doomed", "notebook": "doomed.ipynb", "params": {"flag": str(project/"doomed.flag")}},
        {"name": "after", "notebook": "after.ipynb", "needs": ["doomed"]}]}))
    (project/"doomed.flag").write_text("")
    with DaskExecutor(workers=1, scheduler_kwargs={"allowed_failures": 0}) as executor:
        with pytest.raises(PipelineFailed) as failed:
            run_pipeline(project/"doomed.yaml", executor=executor, progress=False)
        result = failed.value.result
        assert statuses(result, "doomed") == ["failed"] and statuses(result, "after") == ["skipped"]
        error = result.steps["doomed"].outcomes[0].error
        assert error.startswith("the Dask worker running this notebook died (tcp://127.0.0.1:") and "1 worker(s) died running it: KilledWorker" in error
        _, runs = store_runs(project, "doomed")
        assert [r.info.status for r in runs if r.data.tags.get("mlops_nb.step") == "doomed"] == ["FAILED"]

        (project/"doomed.flag").unlink()
        resumed = run_pipeline(project/"doomed.yaml", executor=executor, resume=True, progress=False)   # on the worker the nanny restarted
        assert statuses(resumed, "doomed") == ["ran"] and statuses(resumed, "after") == ["ran"]
    assert executor.cluster.status.name == "closed"

FRAGILE = "import os\nif i == 1 and os.path.exists(flag): raise ValueError(f'point {i} has bad data')"

def test_a_failing_grid_point_fails_skips_and_resumes_as_with_the_local_executor(project, executor):
    "The same pipeline as `local` and as `dask` (on a second client of the module's cluster, joined by address)."
    write_notebook(project/"fragile.ipynb", FRAGILE, parameters="i = 0\nflag = ''")
    write_notebook(project/"summary.ipynb", "x = 1", parameters="x = 0")
    for name in ("local", "dask"):
        grid_pipeline(project, name, "fragile.ipynb", {"i": [0, 1, 2]}, {"flag": str(project/"fragile.flag")},
                      after=[{"name": "summary", "notebook": "summary.ipynb", "needs": ["point"]}])
    (project/"fragile.flag").write_text("")
    results = {}
    with DaskExecutor(executor.address) as joined:
        for name, ex in (("local", None), ("dask", joined)):
            with pytest.raises(PipelineFailed) as failed:
                run_pipeline(project/f"{name}.yaml", executor=ex, jobs=2, progress=False)
            results[name] = failed.value.result
        tables = {name: r.table()[["step", "point", "status", "error"]] for name, r in results.items()}
        pd.testing.assert_frame_equal(tables["dask"], tables["local"])
        assert tables["dask"].status.tolist() == ["ran", "failed", "ran", "skipped"]
        failed_point = results["dask"].steps["point"].outcomes[1]
        assert "ValueError: point 1 has bad data" in failed_point.error and "ValueError" in Path(failed_point.output).read_text()

        (project/"fragile.flag").unlink()
        resumed = run_pipeline(project/"dask.yaml", executor=joined, resume=True, progress=False)
        assert statuses(resumed, "point") == ["cached", "ran", "cached"] and statuses(resumed, "summary") == ["ran"]
    assert executor.client.submit(sum, [1, 2]).result() == 3  # closing the joined executor left the cluster up

def test_bad_scheduler_addresses_are_refused_quickly_and_clearly():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()                                                                   # nothing listens there now
    with pytest.raises(MlopsNbError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:\d+ .*dask scheduler"):
        DaskExecutor(f"tcp://127.0.0.1:{port}", timeout=30)                       # refused at once, not after 30 s
    with pytest.raises(MlopsNbError, match=r"'localhost' is no Dask scheduler address .* write tcp://HOST:PORT"):
        DaskExecutor("localhost")

def test_a_scheduler_without_workers_is_refused():
    from distributed import LocalCluster
    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", dashboard_address=None) as empty:
        with pytest.raises(MlopsNbError, match="has no workers after 1 s: start some with `dask worker"):
            DaskExecutor(empty.scheduler_address, timeout=1)

def test_mlops_nb_run_with_executor_dask_runs_the_pipeline_on_a_local_cluster(tmp_path):
    "The command as users type it: `mlops-nb run --executor dask -j 2` starts its own LocalCluster and stops it."
    from conftest import BIN, run
    root = tmp_path/"cli"
    write_notebook(root/"point.ipynb", "from mlops_nb.tracking import track\nwith track() as run: run.log_metrics(score=a)", parameters="a = 0")
    grid_pipeline(root, "pipeline", "point.ipynb", {"a": [1, 2, 3]})
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}   # the project's own store
    done = run(BIN/"mlops-nb", "run", "--executor", "dask", "-j", "2", cwd=root, env=env)
    assert done.stdout.count(" ran ") == 3 and "pipeline 'pipeline' done" in done.stdout
    _, runs = store_runs(root, "pipeline")
    assert sorted(r.data.metrics["score"] for r in runs if "score" in r.data.metrics) == [1, 2, 3]
    bad = run(BIN/"mlops-nb", "run", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", cwd=root, env=env, check=False)
    assert bad.returncode == 2 and "cannot reach the Dask scheduler" in bad.stderr
