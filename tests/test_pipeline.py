"""Notebook pipelines end to end: real kernels, real MLflow store, the `mlops-nb run` command as users run it."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import nbformat, pytest, yaml
from conftest import BIN, run, store_runs, write_notebook

def mlops(*args, cwd, check=True, env=None):
    return run(BIN/"mlops-nb", *args, cwd=cwd, check=check, env=env)

def four_steps(root:Path):
    "prepare -> features -> train (6-point grid, tracked) -> report (picks the best point)."
    write_notebook(root/"prepare.ipynb", "from pathlib import Path\nPath(raw).write_text('\\n'.join(str(i) for i in range(rows)))",
                   parameters="rows = 10\nraw = 'raw.txt'")
    write_notebook(root/"features.ipynb", "from pathlib import Path\nxs = [int(x) for x in Path(raw).read_text().split()]\n"
                   "Path(features).write_text(json.dumps([x * scale for x in xs]))", parameters="raw = ''\nfeatures = ''\nscale = 2")
    nbformat.write(_with_import(root/"features.ipynb", "import json"), root/"features.ipynb")
    write_notebook(root/"train.ipynb", "import json\nfrom mlops_nb.tracking import track\nxs = json.load(open(features))\n"
                   "with track() as run: run.log_metrics(rmse=abs(alpha - 1) + (family == 'lasso') + sum(xs) / 1000)",
                   parameters="features = ''\nalpha = 1.0\nfamily = 'ridge'")
    write_notebook(root/"report.ipynb", "import json\nfrom mlops_nb.tracking import best_run\n"
                   "ids = ', '.join(repr(i) for i in upstream_runs['train'])\n"
                   "best = best_run('flights', 'rmse', filter=f'attributes.run_id IN ({ids})')\n"
                   "open(report, 'w').write(json.dumps({'run_id': best.info.run_id, 'params': best.data.params}))",
                   parameters="upstream_runs = {}\nreport = ''")
    (root/"pipeline.yaml").write_text(yaml.safe_dump({"name": "flights", "params": {"rows": 10}, "steps": [
        {"name": "prepare", "notebook": "prepare.ipynb", "params": {"rows": "${rows}"}, "products": {"raw": "data/raw.txt"}},
        {"name": "features", "notebook": "features.ipynb", "needs": ["prepare"], "products": {"features": "data/features.json"}},
        {"name": "train", "notebook": "train.ipynb", "needs": ["features"],
         "grid": {"alpha": [0.1, 1.0, 10.0], "family": ["ridge", "lasso"]}, "best": {"metric": "rmse", "mode": "min"}},
        {"name": "report", "notebook": "report.ipynb", "needs": ["train"], "products": {"report": "report.json"}}]}, sort_keys=False))

def _with_import(path, line):
    nb = nbformat.read(path, 4)
    nb.cells.insert(1, nbformat.v4.new_code_cell(line))
    return nb

def statuses(stdout:str)->dict:
    "step -> list of statuses, from the table `mlops-nb run` prints."
    found, states = {}, ("ran", "cached", "failed", "skipped")
    for parts in map(str.split, stdout.splitlines()):
        status = next((p for p in parts[1:3] if p in states), None)
        if status: found.setdefault(parts[0], []).append(status)
    return found

def test_four_steps_with_a_grid_then_cached_then_one_notebook_touched(project):
    four_steps(project)
    first = mlops("run", "--jobs", "2", cwd=project)
    assert statuses(first.stdout) == {"prepare": ["ran"], "features": ["ran"], "train": ["ran"] * 6, "report": ["ran"]}
    assert json.loads((project/"data"/"features.json").read_text()) == [2 * i for i in range(10)]
    report = json.loads((project/"report.json").read_text())
    assert report["params"] == {"features": str(project/"data"/"features.json"), "alpha": "1.0", "family": "ridge"}
    client, runs = store_runs(project, "flights")
    steps = [r for r in runs if "mlops_nb.step" in r.data.tags]
    assert len(steps) == 9 and all(r.info.status == "FINISHED" for r in steps)
    assert len({r.data.tags["mlflow.parentRunId"] for r in steps}) == 1          # one pipeline run holds them all
    assert sum("rmse" in r.data.metrics for r in steps) == 6                       # track joined each grid point's run

    second = mlops("run", cwd=project)
    assert set(sum(statuses(second.stdout).values(), [])) == {"cached"} and "every step is cached" in second.stdout
    assert len(store_runs(project, "flights")[1]) == len(runs)                     # decided from the cache records: no run, no kernel
    probe = run(BIN/"python", "-c", "import sys\nfrom mlops_nb.cli import main\ntry: main(['run'], standalone_mode=False)\n"
                "except SystemExit: pass\nprint(sorted(m for m in ('mlflow', 'papermill', 'pandas', 'nbformat') if m in sys.modules))", cwd=project)
    assert probe.stdout.strip().endswith("[]"), probe.stdout                       # and without importing what it does not need

    nb = nbformat.read(project/"features.ipynb", 4)
    nb.cells[-1].source += "\n# a comment changes the source"
    nbformat.write(nb, project/"features.ipynb")
    third = mlops("run", cwd=project)
    assert statuses(third.stdout) == {"prepare": ["cached"], "features": ["ran"], "train": ["ran"] * 6, "report": ["ran"]}

def test_failure_keeps_the_error_notebook_and_resume_finishes(project):
    write_notebook(project/"a.ipynb", "open(out, 'w').write('a')", parameters="out = ''")
    write_notebook(project/"b.ipynb", "import os\nif os.path.exists('broken'): raise RuntimeError('upstream data is broken')\n"
                   "open(out, 'w').write(open(src).read() + 'b')", parameters="src = ''\nout = ''")
    write_notebook(project/"c.ipynb", "open(final, 'w').write(open(out).read() + 'c')", parameters="out = ''\nfinal = ''")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "abc", "steps": [
        {"name": "a", "notebook": "a.ipynb", "products": {"out": "a.txt"}},
        {"name": "b", "notebook": "b.ipynb", "needs": ["a"], "params": {"src": str(project/"a.txt")}, "products": {"out": "b.txt"}},
        {"name": "c", "notebook": "c.ipynb", "needs": ["b"], "products": {"final": "c.txt"}}]}))
    (project/"broken").write_text("")
    failed = mlops("run", cwd=project, check=False)
    assert failed.returncode == 1
    assert statuses(failed.stdout) == {"a": ["ran"], "b": ["failed"], "c": ["skipped"]}
    assert "b: cell 3" in failed.stderr and "RuntimeError: upstream data is broken" in failed.stderr
    (folder,) = (project/"runs"/"abc").iterdir()
    assert "upstream data is broken" in (folder/"b.ipynb").read_text()       # the executed notebook, error cell and all
    assert not (project/"b.txt").exists() and not list(project.glob(".b.*"))  # no product from a failed step
    _, runs = store_runs(project, "abc")
    assert {r.data.tags.get("mlops_nb.step"): r.info.status for r in runs if "mlops_nb.step" in r.data.tags} == {"a": "FINISHED", "b": "FAILED"}

    (project/"broken").unlink()
    resumed = mlops("run", "--resume", cwd=project)
    assert statuses(resumed.stdout) == {"a": ["cached"], "b": ["ran"], "c": ["ran"]}
    assert (project/"c.txt").read_text() == "abc"
    assert [p.name for p in (project/"runs"/"abc").iterdir()] == [folder.name]   # resumed in the same folder
    assert json.loads((folder/"state.json").read_text())["status"] == "done"
    nothing = mlops("run", "--resume", cwd=project, check=False)
    assert nothing.returncode == 2 and "no failed or interrupted run to resume" in nothing.stderr

SLOW = """import time
from pathlib import Path
Path(out).write_text(f'partial {version}')
if Path(flag).exists(): time.sleep(60)
Path(out).write_text(f'complete {version}')"""

@pytest.mark.same_on_every_store
def test_sigkill_mid_step_leaves_no_product_that_is_accepted(project):
    write_notebook(project/"slow.ipynb", SLOW, parameters="out = ''\nversion = 1\nflag = ''")
    write_notebook(project/"show.ipynb", "open(copy, 'w').write(open(out).read())", parameters="out = ''\ncopy = ''")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "kill", "params": {"version": 1}, "steps": [
        {"name": "slow", "notebook": "slow.ipynb", "params": {"version": "${version}", "flag": str(project/"slow.flag")},
         "products": {"out": "product.txt"}},
        {"name": "show", "notebook": "show.ipynb", "needs": ["slow"], "products": {"copy": "copy.txt"}}]}))
    mlops("run", cwd=project)
    assert (project/"product.txt").read_text() == "complete 1"

    (project/"slow.flag").write_text("")
    runner = subprocess.Popen([BIN/"mlops-nb", "run", "-p", "version=2"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(project.glob(".product.*.tmp.txt")) and time.monotonic() < deadline: time.sleep(0.2)
    assert list(project.glob(".product.*.tmp.txt")), "the slow step never started writing"
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    assert (project/"product.txt").read_text() == "complete 1"     # the old product was not touched by the killed run

    (project/"slow.flag").unlink()
    again = mlops("run", "-p", "version=2", cwd=project)
    assert statuses(again.stdout) == {"slow": ["ran"], "show": ["ran"]}  # the old product is not taken for version 2
    assert (project/"product.txt").read_text() == "complete 2" and (project/"copy.txt").read_text() == "complete 2"
    assert not list(project.glob(".product.*"))                      # the killed run's temporary file is gone

@pytest.mark.same_on_every_store
def test_64_grid_points_with_4_jobs_start_every_kernel(project):
    write_notebook(project/"point.ipynb", "result = i * i", parameters="i = 0")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "wide", "steps": [
        {"name": "point", "notebook": "point.ipynb", "grid": {"i": list(range(64))}}]}))
    for attempt in range(2):
        done = mlops("run", "--jobs", "4", "--force", cwd=project)
        assert statuses(done.stdout) == {"point": ["ran"] * 64}, done.stderr[-3000:]
        assert "Address already in use" not in done.stderr and "failed" not in done.stdout

@pytest.mark.same_on_every_store
def test_kernels_use_this_python_unless_told_otherwise(project, tmp_path):
    """A user-level python3 kernelspec pointing at another interpreter must not silently win, nor does a notebook that
    names no kernel fail; --kernel chooses explicitly."""
    jupyter = tmp_path/"jupyter"
    for name, argv, env in [("python3", ["/bin/sh", "-c", "echo wrong interpreter; exit 3"], {}),
                            ("other", [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], {"MARK": "other kernel"})]:
        (jupyter/"kernels"/name).mkdir(parents=True)
        (jupyter/"kernels"/name/"kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python", "env": env}))
    env = {**os.environ, "JUPYTER_DATA_DIR": str(jupyter), "JUPYTER_PATH": str(jupyter)}
    write_notebook(project/"who.ipynb", "import os, sys\nopen(out, 'w').write(os.environ.get('MARK', sys.executable))", parameters="out = ''")
    bare = nbformat.v4.new_notebook()   # a notebook made by a script: no kernel, no language, no parameters cell
    bare.cells = [nbformat.v4.new_code_cell("import sys\nopen('bare.txt', 'w').write(sys.executable)")]
    nbformat.write(bare, project/"bare.ipynb")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "who", "steps": [
        {"name": "who", "notebook": "who.ipynb", "products": {"out": "who.txt"}}, {"name": "bare", "notebook": "bare.ipynb"}]}))
    plain = run(BIN/"papermill", project/"who.ipynb", tmp_path/"out.ipynb", "-p", "out", tmp_path/"x.txt", cwd=project, check=False, env=env)
    assert plain.returncode != 0            # the stray kernelspec really breaks plain papermill
    mlops("run", cwd=project, env=env)
    assert Path((project/"who.txt").read_text()).parent == Path(sys.executable).parent   # this venv's python
    assert Path((project/"bare.txt").read_text()).parent == Path(sys.executable).parent   # papermill alone refuses it
    mlops("run", "--kernel", "other", "--force", cwd=project, env=env)
    assert (project/"who.txt").read_text() == "other kernel"

@pytest.mark.same_on_every_store
@pytest.mark.parametrize("change, message", [
    ({"steps": [{"name": "a", "notebook": "missing.ipynb"}]}, "notebook"),
    ({"steps": [{"name": "a", "notebook": "a.ipynb", "params": {"alhpa": 1.0}}]}, "declares no parameter 'alhpa'; did you mean 'alpha'?"),
    ({"steps": [{"name": "a", "notebook": "a.ipynb", "params": {"alpha": "high"}}]}, "'alpha' = 'high' is a str"),
    ({"steps": [{"name": "a", "notebook": "a.ipynb", "needs": ["b"]}]}, "needs 'b', which is no step"),
    ({"steps": [{"name": "a", "notebook": "a.ipynb", "needs": ["b"]}, {"name": "b", "notebook": "a.ipynb", "needs": ["a"]}]}, "cycle"),
    ({"steps": [{"name": "a", "notebook": "a.ipynb", "products": {"out": "x"}}, {"name": "b", "notebook": "a.ipynb", "products": {"out": "x"}}]}, "both write x"),
    ({"steps": [{"name": "a", "notebook": "a.ipynb", "param": {}}]}, "unknown key 'param' in step 'a'"),
    ({"stpes": []}, "unknown key 'stpes'"),
    ({"steps": [{"name": "a", "notebook": "a.ipynb", "params": {"alpha": "${nope}"}}]}, "${nope}, which is no pipeline parameter"),
])
def test_validation_errors_exit_2_and_write_nothing(project, change, message):
    write_notebook(project/"a.ipynb", "pass", parameters="alpha = 0.5\nout = ''")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "v", **change}))
    before = sorted(p.name for p in project.iterdir())
    done = mlops("run", cwd=project, check=False)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in project.iterdir()) == before      # no runs/, no store, no cache

@pytest.mark.same_on_every_store
def test_bad_override_and_missing_pipeline(project):
    write_notebook(project/"a.ipynb", "pass", parameters="alpha = 0.5")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "v", "params": {"a": 1}, "steps": [{"name": "a", "notebook": "a.ipynb"}]}))
    assert "has no parameter 'b'" in mlops("run", "-p", "b=2", cwd=project, check=False).stderr
    assert "-p takes key=value" in mlops("run", "-p", "b", cwd=project, check=False).stderr
    missing = mlops("run", "nope.yaml", cwd=project, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr

@pytest.mark.same_on_every_store
def test_only_from_force_and_dry_run(project):
    write_notebook(project/"a.ipynb", "open(out, 'w').write('a')", parameters="out = ''")
    write_notebook(project/"b.ipynb", "open(out, 'w').write(open(src).read() + 'b')", parameters="src = ''\nout = ''")
    write_notebook(project/"c.ipynb", "open(final, 'w').write(open(out).read() + 'c')", parameters="out = ''\nfinal = ''")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "abc", "steps": [
        {"name": "a", "notebook": "a.ipynb", "products": {"out": "a.txt"}},
        {"name": "b", "notebook": "b.ipynb", "needs": ["a"], "params": {"src": str(project/"a.txt")}, "products": {"out": "b.txt"}},
        {"name": "c", "notebook": "c.ipynb", "needs": ["b"], "products": {"final": "c.txt"}}]}))
    plan = mlops("run", "--dry-run", cwd=project).stdout
    assert [l.split()[:2] for l in plan.splitlines()[1:]] == [["a", "False"], ["b", "False"], ["c", "False"]]
    assert not (project/"runs").exists()                                    # a dry run runs nothing
    assert statuses(mlops("run", cwd=project).stdout) == {"a": ["ran"], "b": ["ran"], "c": ["ran"]}
    assert statuses(mlops("run", "--only", "b", cwd=project).stdout) == {"a": ["cached"], "b": ["ran"]}
    assert statuses(mlops("run", "--from", "b", cwd=project).stdout) == {"a": ["cached"], "b": ["ran"], "c": ["ran"]}
    # a forced step that writes the same content leaves its downstream cached: the cache is content, not time
    assert statuses(mlops("run", "--force", "a", cwd=project).stdout) == {"a": ["ran"], "b": ["cached"], "c": ["cached"]}
    assert statuses(mlops("run", "--force", cwd=project).stdout) == {"a": ["ran"], "b": ["ran"], "c": ["ran"]}
    assert (project/"c.txt").read_text() == "abc"
    assert "no step 'd'" in mlops("run", "--only", "d", cwd=project, check=False).stderr

def test_a_step_that_writes_no_product_fails_and_names_it(project):
    write_notebook(project/"lazy.ipynb", "pass", parameters="out = ''")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "lazy", "steps": [
        {"name": "lazy", "notebook": "lazy.ipynb", "products": {"out": "out.txt"}}]}))
    done = mlops("run", cwd=project, check=False)
    assert done.returncode == 1 and "did not write product 'out'" in done.stderr
    _, runs = store_runs(project, "lazy")
    step = [r for r in runs if r.data.tags.get("mlops_nb.step") == "lazy"]
    assert len(step) == 1 and step[0].info.status == "FAILED"

def test_a_store_that_cannot_be_opened_stops_the_run_with_the_reason_and_a_fixed_one_finishes_it(project):
    "The runner opens MLflow beside its first kernels: a store it cannot open stops the run, named; the next run finishes."
    write_notebook(project/"a.ipynb", "from mlops_nb.tracking import track\nwith track() as run: run.log_metrics(m=1.0)\n"
                   "open(out, 'w').write('a')", parameters="out = ''")
    (project/"pipeline.yaml").write_text(yaml.safe_dump({"name": "s", "steps": [{"name": "a", "notebook": "a.ipynb", "products": {"out": "a.txt"}}]}))
    (project/"blocker").write_text("")   # a file where the store's folder would be
    bad = mlops("run", cwd=project, check=False, env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project}/blocker/mlflow.db"})
    assert bad.returncode == 2 and "cannot create the tracking store" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert json.loads(next((project/"runs"/"s").glob("*/state.json")).read_text())["status"] == "failed"
    assert not (project/"a.txt").exists()   # the step's kernel could not join its run: nothing accepted
    assert statuses(mlops("run", cwd=project).stdout) == {"a": ["ran"]}
    assert (project/"a.txt").read_text() == "a"
