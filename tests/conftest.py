"""Shared fixtures: a fresh project folder with its own store, and notebooks written by the tests.

Server mode: with MLOPS_NB_TEST_POSTGRES=postgresql://... (set by `make test-server`), every project's store is a
real `mlflow server` on a PostgreSQL database instead of <project>/mlflow.db. One server runs per test session (it
takes seconds to start); each `project` / `inside_project` gets a fresh database under it: the server's database is
dropped and re-created from a template migrated once per session, and the server reconnects (pool_pre_ping)."""
import contextlib, os, subprocess, sys, uuid
from pathlib import Path
import nbformat, pytest

BIN = Path(sys.executable).parent
POSTGRES = os.environ.get("MLOPS_NB_TEST_POSTGRES")  # an admin URL of a PostgreSQL cluster, or None: sqlite mode
server_mode = pytest.mark.skipif(not POSTGRES, reason="needs MLOPS_NB_TEST_POSTGRES (make test-server)")

class ServerStore:
    "One mlflow server for the session on database `work`, reset from database `template` for each project."
    def __init__(self, admin:str, folder:Path):
        from mlops_nb.tracking_server import check_backend
        self.admin = check_backend(admin)  # the driver named (postgresql+psycopg2://)
        tag = uuid.uuid4().hex[:8]
        self.template, self.work, self.folder = f"mlops_nb_template_{tag}", f"mlops_nb_work_{tag}", folder
        self.server = None

    def _sql(self, *statements:str):
        import sqlalchemy
        engine = sqlalchemy.create_engine(self.admin, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as con:
                for s in statements: con.execute(sqlalchemy.text(s))
        finally: engine.dispose()

    def db_uri(self, name:str)->str: return self.admin.rsplit("/", 1)[0] + "/" + name

    def start(self)->str:
        "Migrate the template once, start the server on a copy of it; the tracking URI."
        if self.server is None:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
            from mlops_nb.tracking_server import start_server
            self._sql(f"CREATE DATABASE {self.template}")
            SqlAlchemyStore(self.db_uri(self.template), "mlflow-artifacts:/").engine.dispose()
            self._sql(f"CREATE DATABASE {self.work} TEMPLATE {self.template}")
            self.server = start_server(self.db_uri(self.work), self.folder/"mlartifacts", port=0,
                                       log=self.folder/"server.log")
        return self.server.url

    def fresh(self)->str:
        "An empty store (a new database behind the running server); the tracking URI."
        url = self.start()
        self._sql(f"DROP DATABASE {self.work} WITH (FORCE)", f"CREATE DATABASE {self.work} TEMPLATE {self.template}")
        from mlops_nb import tracking
        tracking._EXPERIMENTS.clear()  # experiment ids remembered per URI belonged to the database just replaced
        return url

    def stop(self):
        if self.server is None: return
        self.server.stop()
        self._sql(f"DROP DATABASE IF EXISTS {self.work} WITH (FORCE)", f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)")

SERVER: ServerStore|None = None

@pytest.fixture(scope="session", autouse=True)
def tracking_server(tmp_path_factory):
    "In server mode, the session's ServerStore (started on first use), stopped at the end; else None."
    global SERVER
    if not POSTGRES: yield None; return
    SERVER = ServerStore(POSTGRES, tmp_path_factory.mktemp("server"))
    try: yield SERVER
    finally: SERVER.stop()

@pytest.fixture
def project(tmp_path, monkeypatch):
    "An empty project (marked by mlops_nb.toml) whose store is <project>/mlflow.db (MLFLOW_TRACKING_URI unset), or in server mode a fresh server store (MLFLOW_TRACKING_URI set)."
    root = tmp_path/"project"
    root.mkdir()
    (root/"mlops_nb.toml").write_text("")
    if SERVER: monkeypatch.setenv("MLFLOW_TRACKING_URI", SERVER.fresh())
    else: monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")  # kernels and CLIs of this venv
    return root

@contextlib.contextmanager
def inside_project(root:Path):
    "Work in project `root` (its own store, MLFLOW_TRACKING_URI unset; in server mode a fresh server store), then restore the working directory and the URI."
    root.mkdir(parents=True, exist_ok=True)
    (root/"mlops_nb.toml").write_text("")
    saved_cwd, saved_uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    if SERVER: os.environ["MLFLOW_TRACKING_URI"] = SERVER.fresh()
    os.chdir(root)
    try: yield root
    finally:
        os.chdir(saved_cwd)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
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

def run(*args, cwd=None, check=True, env=None, timeout=1800):
    "Run a command of this venv, capture its output; the timeout is a safety net against a hang, sized for a busy machine."
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and done.returncode: raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done

def store_runs(root:Path, experiment:str):
    "Every run of `experiment` in the project's store (sqlite, or the server in server mode), read with MLflow's own client."
    import mlflow
    uri = os.environ["MLFLOW_TRACKING_URI"] if SERVER else f"sqlite:///{root}/mlflow.db"
    client = mlflow.MlflowClient(uri, registry_uri=uri)   # not the registry an earlier test of this process set globally
    exp = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([exp.experiment_id]) if exp else [])

def pytest_configure(config):
    config.addinivalue_line("markers", "same_on_every_store: behaviour that does not depend on the store (validation, "
                            "kernels, cache selection, products): run in sqlite mode, skipped in server mode")

SLOWEST = ("test_demo.py", "test_dask.py", "test_templates.py", "test_security_serving.py", "test_serving.py",
           "test_registry.py", "test_any_project.py")   # measured (60-190 s each)

def pytest_collection_modifyitems(items):
    """The slowest files first: with `--dist load` (tests handed out one by one, in this order) the two workers take the
    long tests early and end together, instead of one of them running the demo alone at the end."""
    items.sort(key=lambda item: SLOWEST.index(item.path.name) if item.path.name in SLOWEST else len(SLOWEST))
    if POSTGRES:
        for item in items:
            if item.get_closest_marker("same_on_every_store"):
                item.add_marker(pytest.mark.skip(reason="the same on every store: run by `make test` on sqlite"))
