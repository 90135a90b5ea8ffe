"""The team tracking server: `start_server`'s checks, the helpers through a real `mlflow server` on PostgreSQL, and
8 notebook processes x 50 runs at once through it. The server tests need MLOPS_NB_TEST_POSTGRES (`make test-server`)."""
import os, signal, socket, subprocess, sys
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FuturesTimeout
import pytest
from conftest import BIN, server_mode, store_runs, write_notebook

@pytest.mark.same_on_every_store
def test_bad_backend_port_and_artifacts_are_refused_before_anything_starts(tmp_path):
    from mlops_nb.tracking_server import start_server, free_port, MlopsNbError
    with pytest.raises(MlopsNbError, match="not a database URL"): start_server("http://127.0.0.1:5000", tmp_path)
    with pytest.raises(MlopsNbError, match="not postgres://"): start_server("postgres://u:p@127.0.0.1/db", tmp_path)
    closed = free_port()
    with pytest.raises(MlopsNbError, match=f"cannot connect to the backend store postgresql\\+psycopg2://u:\\*\\*\\*@127.0.0.1:{closed}/db"):
        start_server(f"postgresql://u:secret@127.0.0.1:{closed}/db", tmp_path)
    (tmp_path/"file").write_text("")
    with pytest.raises(MlopsNbError, match="cannot create the artifact folder"):
        start_server(f"sqlite:///{tmp_path}/mlflow.db", tmp_path/"file"/"artifacts")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0)); busy.listen()
        with pytest.raises(MlopsNbError, match=f"port {busy.getsockname()[1]} on 127.0.0.1 is in use"):
            start_server(f"sqlite:///{tmp_path}/mlflow.db", tmp_path/"artifacts", port=busy.getsockname()[1])
    assert not list(tmp_path.glob("mlops_nb-server-*.log"))  # nothing was started

@pytest.mark.same_on_every_store
def test_a_missing_postgres_driver_names_the_extra(tmp_path):
    "A Python without psycopg2 (hidden from this child process) is told which extra to install."
    code = ("import sys; sys.modules['psycopg2'] = sys.modules['psycopg'] = None\n"
            "from mlops_nb.tracking_server import check_backend\n"
            "check_backend('postgresql://u:p@127.0.0.1:5432/db')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and "pip install mlops_nb[server]" in done.stderr

@server_mode
def test_helpers_work_unchanged_through_the_server(project, tracking_server):
    "track, log_model, register, promote, load and the maturity evidence, all through the server on PostgreSQL."
    import mlflow, pandas as pd
    from sklearn.linear_model import Ridge
    from mlops_nb.tracking import track, best_run
    from mlops_nb.registry import register, promote, load, versions
    from mlops_nb.config import MlopsNbError, RegistryLock, tracking_uri
    from mlops_nb.evidence import Project
    os.chdir(project)
    assert tracking_uri() == tracking_server.server.url and tracking_server.server.url.startswith("http://127.0.0.1:")
    X = pd.DataFrame({"distance": [100.0, 500.0, 1000.0]})
    for alpha in (0.1, 1.0):
        with track("srv", params={"alpha": alpha}) as r:
            r.log_metrics(rmse=alpha * 2)
            r.log_model(Ridge(alpha=alpha).fit(X, X.distance / 8), X)
    best = best_run("srv", "rmse")
    assert best.data.params["alpha"] == "0.1"
    assert list(mlflow.artifacts.list_artifacts(run_id=best.info.run_id)) is not None
    v1 = int(register(best.info.run_id, "flights", metrics={"rmse": 0.2}, evaluation="e").version)
    with RegistryLock(tracking_uri(), "registry") as lock:   # a promotion waits for the lock's holder ...
        waiting = ThreadPoolExecutor(1).submit(promote, "flights", v1, metric="rmse")
        with pytest.raises(FuturesTimeout): waiting.result(timeout=2)
        assert [m.name for m in Project(project, tracking_uri()).models] == ["flights"]  # ... and is no model
        with pytest.raises(MlopsNbError, match=r"did you mean 'flights'\? \(models in the registry: flights\)$"): promote("flihgts", v1)
        with pytest.raises(MlopsNbError, match=f"could not take the lock '{lock.name}'.*held by .*:{os.getpid()}"):
            RegistryLock(tracking_uri(), "registry", timeout=0.3).acquire()
    assert waiting.result(timeout=60)["to"] == v1         # released: the promotion went through
    assert load("flights").predict(X).shape == (3,)
    assert versions("flights").aliases.tolist() == ["champion"]
    artifacts = list((tracking_server.folder/"mlartifacts").rglob("MLmodel"))
    assert artifacts, "the model went through the server to its artifacts destination"

RUNS = '''
from mlops_nb.tracking import track
for i in range(runs):
    with track("parallel", params={"proc": proc, "i": i}) as r: r.log_metrics(score=proc * 1000 + i)
'''

@server_mode
def test_eight_notebook_processes_times_50_runs_lose_nothing(project, tmp_path):
    nb = write_notebook(project/"runs.ipynb", RUNS, parameters="proc = 0\nruns = 1\n")
    # the mlops_nb engine: its kernels talk over IPC sockets, where papermill's own pick TCP ports that another
    # process may take before the kernel binds them (jupyter_client's race: "Kernel died before replying to kernel_info")
    procs = [subprocess.Popen([BIN/"papermill", "--engine", "mlops_nb", nb, tmp_path/f"out{p}.ipynb", "-p", "proc", str(p), "-p", "runs", "50",
                               "--cwd", project, "--start-timeout", "600"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in range(8)]
    outs = [p.communicate(timeout=900) for p in procs]
    failed = {n: err[-4000:] for n, (p, (_, err)) in enumerate(zip(procs, outs)) if p.returncode}
    assert not failed, failed
    _, runs = store_runs(project, "parallel")
    assert len(runs) == 400 and all(r.info.status == "FINISHED" for r in runs)
    seen = {(int(r.data.params["proc"]), int(r.data.params["i"])): r.data.metrics["score"] for r in runs}
    assert seen == {(p, i): p * 1000 + i for p in range(8) for i in range(50)}

@server_mode
def test_serving_and_monitoring_work_unchanged_through_the_server(project, tracking_server):
    "The model service loads the champion through the server; a monitored batch is a run in the server's store."
    import httpx, numpy as np, pandas as pd
    from sklearn.linear_model import Ridge
    from mlops_nb.tracking import track
    from mlops_nb.registry import register, promote, load
    from mlops_nb.monitoring import Monitor
    from mlops_nb.serving import start_service
    os.chdir(project)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"distance": rng.uniform(100, 2500, 400)})
    with track("srv") as r: run_id = r.run_id; r.log_model(Ridge().fit(X, X.distance / 8), X)
    version = int(register(run_id, "served").version)
    promote("served", version, force=True)
    with start_service("models:/served@champion", "--no-log", cwd=project, timeout=180, log=project/"serve.log") as service:
        answer = httpx.post(f"{service.url}/invocations", json={"dataframe_records": X.head(5).to_dict("records")}, timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == str(version)
        assert answer.json()["predictions"] == load("served").predict(X.head(5)).tolist()   # the registry's model, exactly
    batch = X.assign(distance=X.distance * 1.5)
    report = Monitor(X.assign(air_time=X.distance / 8), model="models:/served@champion", target="air_time",
                     experiment="monitoring").check(batch.assign(air_time=batch.distance / 8 + 30))
    assert report.verdict != "ok"                                          # the shifted batch drifted and got worse
    _, monitored = store_runs(project, "monitoring")
    assert len(monitored) == 1 and monitored[0].info.status == "FINISHED"  # logged through the server

# --- issue 15, finding 9: the database URL stays off command lines; SIGTERM stops everything ---------------------------

def _cmdline(pid:int)->str:
    try: return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError: return ""

def _running(pid:int)->bool:
    "Alive and not a zombie."
    try: return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError: return False

@pytest.mark.same_on_every_store
def test_sigterm_stops_mlflow_server_and_its_children_and_exits_143(tmp_path):
    "`mlops-nb server` stopped the way systemd, docker and `kill` stop it; its database URL is on no command line."
    from mlops_nb.tracking_server import free_port, _descendants
    from mlops_nb.serving import wait_healthy
    project = tmp_path/"project"
    project.mkdir()
    (project/"mlops_nb.toml").write_text("")
    port, log = free_port(), open(tmp_path/"server.log", "w")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([str(BIN/"mlops-nb"), "server", "--port", str(port)], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=300, log=tmp_path/"server.log")   # the same probe as a model service's
        family = _descendants(proc.pid)
        commands = {pid: _cmdline(pid) for pid in family}
        database = str(project/"mlflow.db")
        assert any("mlflow server" in c for c in commands.values()) and any("uvicorn" in c for c in commands.values()), commands
        assert not any(database in c for c in commands.values()), "the database URL (a password on PostgreSQL) is visible in ps"
        mlflow_server = next(pid for pid, c in commands.items() if "mlflow server" in c)
        assert database.encode() in open(f"/proc/{mlflow_server}/environ", "rb").read()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
    finally:
        if proc.poll() is None: proc.kill(); proc.wait()
        log.close()
    left = [commands[p] for p in family if _running(p)]
    print(f"\nSIGTERM: mlops-nb server exited {code}; {len(family)} processes below it, {len(left)} left running")
    assert code == 128 + signal.SIGTERM and not left, left
    with pytest.raises(OSError): socket.create_connection(("127.0.0.1", port), timeout=2).close()

@server_mode
def test_the_postgres_password_is_on_no_command_line(tracking_server):
    from sqlalchemy.engine import make_url
    from mlops_nb.tracking_server import _descendants
    tracking_server.start()
    password = make_url(tracking_server.admin).password
    family = [tracking_server.server.process.pid, *_descendants(tracking_server.server.process.pid)]
    assert password and len(family) >= 2
    assert not any(password in _cmdline(pid) for pid in family)
    assert not any("_job_runner" in _cmdline(pid) for pid in family)   # MLflow's job runner is off unless asked for
