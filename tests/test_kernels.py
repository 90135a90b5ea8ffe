"""Warm kernels (mlops_nb.kernels): a forked kernel gives the executed notebook and the MLflow run a cold one gives, no
state crosses from one task to another, and every failure ends as it ends with a cold kernel, leaving no process behind.
Cold runs use MLOPS_NB_PRELOAD=off; every run marks its processes with an environment variable so that the test can
find them (and their absence) among the other processes of the machine."""
import json, os, re, signal, subprocess, sys, time, uuid
from pathlib import Path
import nbformat, pytest, yaml
from conftest import BIN, run, store_runs, write_notebook

def marked(mark:str)->list[int]:
    "Processes whose environment holds KERNELS_TEST_MARK=mark: the runner, the zygote, kernels."
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try: env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError: continue
        if f"KERNELS_TEST_MARK={mark}".encode() in env and int(pid) != os.getpid(): found.append(int(pid))
    return found

def environment(mark:str, warm:bool)->dict:
    return {**os.environ, "KERNELS_TEST_MARK": mark, **({} if warm else {"MLOPS_NB_PRELOAD": "off"})}

def mlops(*args, cwd, env, check=True):
    return run(BIN/"mlops-nb", *args, cwd=cwd, check=check, env=env)

def gone(mark:str, within:float=30)->list[int]:
    "The marked processes still alive after waiting up to `within` seconds for them to end (a safety net)."
    deadline = time.monotonic() + within
    while marked(mark) and time.monotonic() < deadline: time.sleep(0.2)
    return marked(mark)

def forked(probe:dict)->bool:
    "Was this kernel forked by a zygote? A cold kernel's parent is the runner, whose pid jupyter_client exports."
    return probe["ppid"] != int(probe["parent"])

PROBE = """import json, os
open(probe, 'a').write(json.dumps({'pid': os.getpid(), 'ppid': os.getppid(), 'parent': os.environ['JPY_PARENT_PID']}) + '\\n')"""

CELLS = [
    # what the process looks like from inside: folder, argv, __main__, sys.path, streams, signals, threads, environment
    "import logging, os, signal, sys, threading, warnings\n"
    "import numpy as np, pandas as pd, mlflow\n"
    "from sklearn.linear_model import Ridge\n"
    "from mlops_nb.tracking import track\n"
    "volatile = {'MLOPS_NB_STEP_RUN', 'MLOPS_NB_STEP_RUN_FILE', 'MLOPS_NB_EXECUTION', 'MLFLOW_RUN_CONTEXT', 'JPY_PARENT_PID', 'MLOPS_NB_PRELOAD'}\n"
    "print(os.getcwd(), sys.argv[0], __name__, sys.path, sys.stdin.read() == '', signal.getsignal(signal.SIGINT),\n"
    "      threading.active_count(), sep='\\n')\n"
    "{k: v for k, v in sorted(os.environ.items()) if k not in volatile}",
    "df = pd.DataFrame({'x': [1, 2, 3], 'y': [2.0, 4.1, 5.9]})\ndf",                      # HTML and text output
    "model = Ridge(alpha=alpha).fit(df[['x']], df.y)\nmodel",                              # scikit-learn's HTML repr
    "warnings.warn('check the data')\nlogging.getLogger('mlflow').warning('from MLflow\\'s logger')\n"
    "print('to stdout'); print('to stderr', file=sys.stderr)",
    "with track() as run:\n    run.log_params(alpha=alpha).log_metrics(coef=float(model.coef_[0])).set_tags(checked='yes')",
    "import ipywidgets\nfrom tqdm.auto import tqdm\nprint(sorted(get_ipython().kernel.comm_manager.targets), [c.__module__ for c in tqdm.__mro__[:2]])",
    PROBE,
]
VOLATILE_TAGS = {"mlops_nb.execution", "mlops_nb.seconds", "mlflow.parentRunId", "mlops_nb.folder"}  # this run's ids

def comparable(nb)->list:
    """A notebook's cells without what differs between any two executions, cold or warm: timings, cell ids, the kernel's
    pid in warnings' file names (/tmp/ipykernel_<pid>/) and the time in MLflow's log lines."""
    clean = lambda text: re.sub(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d", "<time>", re.sub(r"ipykernel_\d+", "ipykernel_<pid>", text))
    return [(c.cell_type, c.source, c.get("execution_count"), clean(json.dumps(c.get("outputs"))), c.metadata.get("tags"))
            for c in nb.cells]

def step_run(project:Path, folder:Path):
    "The MLflow run of the step `probe` in the pipeline run whose notebooks are in `folder`."
    _, runs = store_runs(project, "probe")
    (parent,) = [r for r in runs if r.data.tags.get("mlops_nb.folder") == str(folder)]
    (step,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return step

def test_a_warm_task_gives_the_notebook_and_the_run_of_a_cold_one(project):
    write_notebook(project/"probe.ipynb", *CELLS, parameters="alpha = 0.5\nprobe = ''")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "probe", "steps": [
        {"name": "probe", "notebook": "probe.ipynb", "params": {"alpha": 2.0, "probe": str(project/"probe.jsonl")}}]}))
    mark, results = uuid.uuid4().hex, {}
    for warm in (False, True):
        mlops("run", "--force", cwd=project, env=environment(mark, warm))
        (folder,) = set((project/"runs"/"probe").iterdir()) - {r[0] for r in results.values()}
        results[warm] = folder, nbformat.read(folder/"probe.ipynb", 4), step_run(project, folder)
    probes = [json.loads(l) for l in (project/"probe.jsonl").read_text().splitlines()]
    assert [forked(p) for p in probes] == [False, True]          # the second kernel really came from the zygote
    (_, cold_nb, cold_run), (_, warm_nb, warm_run) = results[False], results[True]
    assert comparable(warm_nb) == comparable(cold_nb)
    assert warm_nb.metadata.papermill.parameters == cold_nb.metadata.papermill.parameters == {"alpha": 2.0, "probe": str(project/"probe.jsonl")}
    assert "alpha = 2.0" in warm_nb.cells[1].source and "injected-parameters" in warm_nb.cells[1].metadata.tags
    outputs = json.dumps([c.get("outputs") for c in warm_nb.cells])
    for expected in ("<table", "Ridge", "check the data", "from MLflow's logger", "to stderr", "jupyter.widget", "tqdm.notebook"):
        assert expected in outputs, expected
    assert warm_run.data.params == cold_run.data.params == {"alpha": "2.0", "probe": str(project/"probe.jsonl")}
    assert warm_run.data.metrics == cold_run.data.metrics and "coef" in warm_run.data.metrics
    assert warm_run.data.tags.keys() == cold_run.data.tags.keys() and warm_run.data.tags["checked"] == "yes"
    assert {k: v for k, v in warm_run.data.tags.items() if k not in VOLATILE_TAGS} == \
           {k: v for k, v in cold_run.data.tags.items() if k not in VOLATILE_TAGS}
    assert warm_run.info.status == cold_run.info.status == "FINISHED"
    assert gone(mark) == []

LEAK = """import builtins, gc, json, os, random, sys
import numpy as np, pandas as pd, sklearn, mlops_nb.tracking as tracking
seen = {'env': os.environ.get('LEAKED'), 'pandas': getattr(pd, 'leaked', None), 'builtins': getattr(builtins, 'leaked', None),
        'sklearn': sklearn.get_config()['assume_finite'], 'tracking': getattr(tracking, 'leaked', None),
        'modules': 'leaked_module' in sys.modules, 'np': np.random.rand(), 'random': random.random(),
        'pid': os.getpid(), 'ppid': os.getppid(), 'parent': os.environ['JPY_PARENT_PID'], 'frozen': gc.get_freeze_count()}
open(probe, 'a').write(json.dumps(seen) + '\\n')
os.environ['LEAKED'] = pd.leaked = builtins.leaked = tracking.leaked = str(i)
sklearn.set_config(assume_finite=True); np.random.seed(0); random.seed(0); sys.modules['leaked_module'] = sys"""

FORK_TWICE = """import json, os, random, numpy as np
from mlops_nb.zygote import _reseed
np.random.rand()  # as a preloaded module may do at import: numpy 2 seeds its global generator at first use
def child(reseed):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        if reseed: _reseed()
        os.write(w, json.dumps(np.random.rand()).encode()); os._exit(0)
    os.waitpid(pid, 0)
    return json.loads(os.read(r, 100))
print(json.dumps([child(False), child(False), child(True), child(True)]))"""

def test_forked_children_share_numpy_random_state_unless_reseeded():
    "Why the zygote reseeds: without it, every forked kernel draws the same 'random' numbers from numpy."
    a, b, c, d = json.loads(run(sys.executable, "-c", FORK_TWICE).stdout)
    assert a == b and c != d

HANG = "import os, time\nopen(pidfile, 'w').write(str(os.getpid()))\ntime.sleep(300)"

def test_no_state_crosses_tasks_and_a_killed_runner_leaves_no_process(project):
    """Four warm tasks, two at a time, each changing what it can of the process: none sees another's changes. Then a
    step hangs in its warm kernel and `mlops-nb run` is killed (SIGKILL): the zygote sees its stdin close and kills it."""
    write_notebook(project/"leak.ipynb", LEAK, parameters="i = 0\nprobe = ''")
    write_notebook(project/"hang.ipynb", HANG, parameters="pidfile = ''")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "leak", "steps": [
        {"name": "leak", "notebook": "leak.ipynb", "params": {"probe": str(project/"seen.jsonl")}, "grid": {"i": list(range(4))}},
        {"name": "hang", "notebook": "hang.ipynb", "needs": ["leak"], "params": {"pidfile": str(project/"kernel.pid")}}]}))
    mark, pidfile = uuid.uuid4().hex, project/"kernel.pid"
    runner = subprocess.Popen([BIN/"mlops-nb", "run", "--jobs", "2"], cwd=project, env=environment(mark, warm=True),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not pidfile.is_file() or not pidfile.read_text():
        assert time.monotonic() < deadline and runner.poll() is None, runner.communicate()
        time.sleep(0.1)
    kernel = int(pidfile.read_text())
    ppid = int(Path(f"/proc/{kernel}/stat").read_text().rpartition(")")[2].split()[1])
    runner.kill()
    runner.communicate(timeout=120)
    assert gone(mark) == [], f"left behind: {marked(mark)}"
    assert forked({"ppid": ppid, "parent": runner.pid})
    seen = [json.loads(l) for l in (project/"seen.jsonl").read_text().splitlines()]
    assert len(seen) == 4 and all(forked(s) for s in seen)
    for s in seen:   # what every earlier task changed is invisible to the later ones
        assert (s["env"], s["pandas"], s["builtins"], s["sklearn"], s["tracking"], s["modules"]) == (None, None, None, False, None, False)
    assert len({s["pid"] for s in seen}) == 4                                   # a kernel per task
    assert all(s["frozen"] > 10_000 for s in seen)           # the zygote's objects are left out of the kernels' collections
    assert len({s["np"] for s in seen}) == 4 and len({s["random"] for s in seen}) == 4  # and fresh random state

# In-process: papermill with the mlops_nb engine, as a papermill loop would use it.

@pytest.fixture(scope="module")
def home(tmp_path_factory):
    "One project for the in-process tests: its store (the engine attaches executed notebooks to it) is created once."
    root = tmp_path_factory.mktemp("home")
    (root/"mlops_nb.toml").write_text("")
    return root

@pytest.fixture
def here(home, request, monkeypatch):
    "A folder of its own for this test inside `home`, whose store it uses."
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder = home/request.node.name.replace("[", "-").replace("]", "").replace(" ", "-")
    folder.mkdir()
    return folder

def execute(notebook:Path, zygote=None, **kw):
    import papermill as pm
    return pm.execute_notebook(str(notebook), str(notebook.with_suffix(".out.ipynb")), engine_name="mlops_nb",
                               zygote=zygote, progress_bar=False, cwd=str(notebook.parent), **kw)

def killed(notebook:Path, zygote)->str:
    "Execute `notebook` (HANG) as a pipeline task, SIGKILL its kernel mid-cell; the error the runner would report."
    from concurrent.futures import ThreadPoolExecutor
    from mlops_nb.pipeline import execute_task
    pidfile = notebook.with_suffix(".pid")
    pidfile.unlink(missing_ok=True)
    with ThreadPoolExecutor(1) as pool:
        task = pool.submit(execute_task, str(notebook), str(notebook.with_suffix(".out.ipynb")), {"pidfile": str(pidfile)}, {}, None, zygote)
        deadline = time.monotonic() + 120
        while not pidfile.is_file() or not pidfile.read_text():
            assert time.monotonic() < deadline and not task.done(), "the task never started"
            time.sleep(0.1)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        outcome = task.result(timeout=120)
    assert outcome.status == "failed"
    return outcome.error

def test_a_killed_or_interrupted_warm_kernel_ends_the_task_as_a_cold_one(here, monkeypatch):
    import papermill as pm
    from mlops_nb.kernels import Zygote
    mark = uuid.uuid4().hex
    monkeypatch.setenv("KERNELS_TEST_MARK", mark)
    hanging = write_notebook(here/"hang.ipynb", HANG, parameters="pidfile = ''")
    slow = write_notebook(here/"slow.ipynb", "import time\ntime.sleep(300)", "print('never')")
    errors, interrupted = [], []
    with Zygote(preload=[]) as z:
        for zygote in (None, z):
            errors.append(killed(hanging, zygote))
            with pytest.raises(pm.PapermillExecutionError) as e:  # a cell that times out is interrupted (SIGINT)
                execute(slow, zygote, execution_timeout=2, interrupt_on_timeout=True)
            interrupted.append((e.value.ename, e.value.cell_index, comparable(nbformat.read(slow.with_suffix(".out.ipynb"), 4))))
        assert z.warm == 2 and not z.cold
    assert errors[0] == errors[1] == "DeadKernelError: Kernel died"
    assert interrupted[0] == interrupted[1] and interrupted[0][0] == "KeyboardInterrupt"
    assert gone(mark, within=10) == []

def test_a_run_says_when_and_why_its_kernels_started_cold(here, monkeypatch, capsys):
    """A module in the task's folder that would shadow one the zygote preloaded (here an exact copy of the standard
    library's `secrets`, which pandas imports): the task starts cold, and the run says so in one line at the end. The
    step's notebook has no parameters cell, as many notebooks do."""
    import secrets, shutil
    from mlops_nb import kernels
    from mlops_nb.pipeline import run_pipeline
    write_notebook(here/"step.ipynb", "import pandas as pd\nx = 1")
    shutil.copy(secrets.__file__, here/"secrets.py")
    (here/"pipeline.yaml").write_text(yaml.safe_dump({"name": "shadow", "steps": [{"name": "s", "notebook": "step.ipynb"}]}))
    zygote = kernels.Zygote(preload=["pandas"])
    assert zygote.preloaded(300)    # the zygote has imported pandas (and secrets) before the task asks for a kernel
    monkeypatch.setattr(kernels, "start_zygote", lambda notebooks=None: zygote)
    result = run_pipeline(here/"pipeline.yaml", jobs=1)
    assert result.ok and zygote.warm == 0
    assert f"1 of 1 kernels started cold (same results, slower): {here}/secrets.py would shadow the preloaded module secrets (1)" \
        in capsys.readouterr().out

# ipykernel's shutdown race, made certain instead of 1 kernel in 10: the control thread flushes stdout after answering
# `shutdown_request` (here 0.3 s late), and the IOPub thread, stopped by its `atexit` handler, lingers after closing its
# sockets (here 0.6 s), so that the flush finds the thread alive but no one reading its pipe.
RACE = """import sys, threading, time
def late_flush(flush=sys.stdout.flush, threading=threading, time=time):  # defaults: IPython empties the namespace first
    if threading.current_thread().name == "Control": time.sleep(0.3)
    flush()
sys.stdout.flush = late_flush
def close_then_linger(*args, close=sys.stdout.pub_thread.io_loop.close, time=time, **kwargs):
    close(*args, **kwargs)
    time.sleep(0.6)
sys.stdout.pub_thread.io_loop.close = close_then_linger"""

@pytest.mark.parametrize("warm", [True, False])
def test_a_kernel_ends_by_itself_when_its_last_flush_comes_late(here, monkeypatch, warm):
    """Without `_join_control` (loaded as an extension by every python3 kernel mlops_nb starts) the kernel hangs in
    `close` until jupyter_client sends SIGTERM; with it, it ends by itself (a forked one with exit code 0)."""
    from jupyter_client.manager import KernelManager
    from mlops_nb.kernels import Zygote
    sigterms, send_sigterm = [], KernelManager._async_send_kernel_sigterm
    async def recorded(self, *args, **kwargs):
        sigterms.append(self.kernel_id)
        return await send_sigterm(self, *args, **kwargs)
    monkeypatch.setattr(KernelManager, "_async_send_kernel_sigterm", recorded)
    monkeypatch.setattr(KernelManager.shutdown_wait_time, "default_value", 120.0)  # SIGTERM after 60 s, not 2.5: a busy machine's margin
    notebook = write_notebook(here/"late.ipynb", RACE, "print('done')")
    if warm:
        with Zygote(preload=[]) as z:
            execute(notebook, z)
            assert z.warm == 1 and not z.cold and [k.wait(timeout=60) for k in z.kernels] == [0]
    else: execute(notebook)
    assert sigterms == []

FATES = {  # a zygote that ... : (module it preloads, what the warning says)
    "was killed": (None, "the kernel zygote exited with code -9"),
    "crashed while preloading": ("import os; os._exit(3)", "the kernel zygote exited with code 3"),
    "found a thread": ("import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True, name='poller').start()",
                       "Python threads are running (poller)"),
    "preloaded a module that prints": ("print('hello')", "importing fate printed 'hello'"),
}

@pytest.mark.parametrize("fate", FATES)
def test_a_zygote_that_cannot_fork_leaves_kernels_cold_and_nothing_behind(here, tmp_path, monkeypatch, fate):
    from mlops_nb.kernels import ColdKernelWarning, Zygote
    module, message = FATES[fate]
    mark = uuid.uuid4().hex
    monkeypatch.setenv("KERNELS_TEST_MARK", mark)
    if module:
        (tmp_path/"mods").mkdir()
        (tmp_path/"mods"/"fate.py").write_text(module)
        monkeypatch.setenv("PYTHONPATH", str(tmp_path/"mods"))
    nb = write_notebook(here/"answer.ipynb", "print(6 * 7)")
    with Zygote(preload=["fate"] if module else []) as z:
        if not module: os.kill(z.pid, signal.SIGKILL)
        assert z.preloaded(60) is (fate in ("found a thread", "preloaded a module that prints"))
        with pytest.warns(ColdKernelWarning, match=re.escape(message)):
            out = execute(nb, z)
        assert out.cells[0].outputs[0].text == "42\n" and z.warm == 0 and list(z.cold.values()) == [1]
        execute(nb, z)  # said once: the next kernel starts cold without asking
    assert gone(mark, within=10) == []
