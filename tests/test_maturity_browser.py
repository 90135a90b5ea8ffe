"""The maturity checklist in a real browser: JupyterLab started here, Debian's chromium driven by Playwright.

Run with `make test-browser`, which installs chromium first (.ci/install-browser); skips only where chromium or the
playwright package is missing."""
import json, os, secrets, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import nbformat, pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO/"tests"/"artifacts"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]

def _free_port()->int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def _kernelspec(folder:Path)->Path:
    "A `python3` kernelspec that runs this interpreter, first on JUPYTER_PATH."
    spec = folder/"kernels"/"python3"
    spec.mkdir(parents=True)
    (spec/"kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                                "display_name": "Python 3", "language": "python"}))
    return folder

def _settings(folder:Path)->Path:
    "JupyterLab user settings for the test: no news prompt over the widget."
    news = folder/"@jupyterlab"/"apputils-extension"/"notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return folder

def _wait_for_server(url:str, proc, timeout:float=90):
    "Poll the server's status API until it answers."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None: raise AssertionError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2): return
        except OSError: time.sleep(0.5)
    raise AssertionError(f"jupyter lab did not answer {url} within {timeout}s")

@pytest.fixture
def lab(tmp_path):
    "JupyterLab on 127.0.0.1 (random port, token) serving a project with a checklist notebook; its base URL, token, root."
    if not CHROMIUM.exists(): pytest.skip(f"{CHROMIUM} is missing: run `make test-browser` (.ci/install-browser installs it with apt)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is missing: pip install -e '.[dev]'")
    root = tmp_path/"project"
    root.mkdir()
    (root/"mlops_nb.toml").write_text("")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells.append(nbformat.v4.new_code_cell('from mlops_nb.maturity import assess, checklist\nchecklist(assess("."))'))
    nbformat.write(nb, root/"checklist.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",     # kernels and tools of this venv
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),  # this checkout's mlops_nb
            "JUPYTER_PATH": str(_kernelspec(tmp_path/"jupyter")), "JUPYTER_CONFIG_DIR": str(tmp_path/"config"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path/"runtime"), "IPYTHONDIR": str(tmp_path/"ipython")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={tmp_path/'workspaces'}",
           f"--LabApp.user_settings_dir={_settings(tmp_path/'settings')}",
           "--ServerApp.port_retries=0", "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"] + (["--allow-root"] if os.geteuid() == 0 else [])
    log = (tmp_path/"lab.log").open("w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", proc)
        yield base, token, root
    except AssertionError as e:
        raise AssertionError(f"{e}\n{(tmp_path/'lab.log').read_text()[-3000:]}") from None
    finally:
        proc.terminate()      # the server shuts its kernels down on SIGTERM
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        try: os.killpg(proc.pid, signal.SIGKILL)   # anything of this server's own process group that outlived it
        except ProcessLookupError: pass
        log.close()

@pytest.mark.timeout(300)
def test_ticking_a_box_in_jupyterlab_changes_the_level_and_saves_the_answers(lab):
    from playwright.sync_api import sync_playwright
    base, token, root = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"{base}/lab/tree/checklist.ipynb?token={token}")
            _run_until_widget(page)
            level = page.locator(".mlops-nb-level")
            before = level.inner_text()
            assert before.startswith("Level 0: No MLOps (0 of 17 practices"), before
            page.locator(".widget-checkbox", has_text="A CI pipeline runs the tests").locator("input").click()
            page.wait_for_function("t => document.querySelector('.mlops-nb-level').innerText !== t", arg=before, timeout=30_000)
            assert "(1 of 17 practices" in level.inner_text()
            page.locator(".widget-checkbox", has_text="The code has unit and integration tests").locator("input").click()
            page.wait_for_function("() => document.querySelector('.mlops-nb-level').innerText.startsWith('Level 1')", timeout=30_000)
            page.get_by_role("button", name="Save answers").click()
            page.wait_for_selector("text=saved 2 ticked answers", timeout=30_000)
            level.scroll_into_view_if_needed()        # the picture shows the indicator and the ticked level-1 boxes
            page.screenshot(path=str(ARTIFACTS/"maturity.png"), full_page=True)
        finally:
            browser.close()
    assert level_after_save(root) == 1

def _run_all(page):
    "JupyterLab's Run > Run All Cells, once the kernel is idle."
    page.get_by_text("Python 3 | Idle").wait_for(timeout=90_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

def _run_until_widget(page, attempts:int=3):
    "Run the notebook until the checklist shows (a run sent while the page settles can be lost)."
    for attempt in range(attempts):
        _run_all(page)
        try: return page.wait_for_selector(".widget-checkbox input", timeout=45_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS/f"maturity-attempt-{attempt}.png"))
            if attempt == attempts - 1: raise

def level_after_save(root:Path)->int:
    "The level `assess` reads back from the answers the browser saved."
    from mlops_nb.maturity import assess, load_answers
    assert load_answers(root)["ci"] is True and load_answers(root)["tests"] is True
    return assess(root).level
