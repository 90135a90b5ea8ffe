"""Issue 15 as attacks on real `mlops_nb.serving.serve` processes on 127.0.0.1: a promoted pickle (finding 1), payloads
that stall or bloat the service (2, 3), colliding log columns (4), SIGKILL under load (5), the small holes of 9, and
MLflow's own scoring server answering the same payloads (10). One shared server takes the payload attacks while a
normal client keeps scoring; its p99 during the attacks is printed."""
import json, os, pickle, signal, socket, statistics, threading, time
from pathlib import Path
import pytest
from conftest import BIN, inside_project, run
from test_serving import start

httpx = pytest.importorskip("httpx")
ROW = {"origin": "JFK", "dest": "LAX", "carrier": "AA", "distance": 2475}

def synthetic(n:int, seed:int=0):
    "Flights-like rows and an air time, made up (no data download, a second to fit)."
    import numpy as np, pandas as pd
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"origin": rng.choice(["JFK", "LGA", "EWR"], n), "dest": rng.choice(["LAX", "SFO", "ORD", "ATL", "MIA"], n),
                      "carrier": rng.choice(["AA", "DL", "UA", "B6"], n), "distance": rng.integers(200, 2600, n)})
    return X, X.distance / 8 + rng.normal(0, 5, n)

def tabular_model():
    "One-hot route and carrier plus distance into a ridge: only types skops trusts by default."
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    return make_pipeline(ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["origin", "dest", "carrier"])],
                                           remainder="passthrough"), Ridge())

class Payload:
    "Unpickling this makes the folder `marker`: code run by loading a model."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.mkdir, (str(self.marker),))

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with models `secure` (skops, champion v1), `collide` (input columns named like the log's) and
    `victim` (v1 skops champion; v2 a pickle with a payload, registered with a claimed rmse, not promoted yet)."""
    with inside_project(tmp_path_factory.mktemp("security")) as root:
        import mlflow, mlflow.sklearn, pandas as pd
        from sklearn.linear_model import LinearRegression
        from mlops_nb.config import use_store
        from mlops_nb.tracking import track
        from mlops_nb.registry import register
        use_store(root)
        client = mlflow.MlflowClient()
        X, y = synthetic(2000)
        with track("security") as run: run.log_model(tabular_model().fit(X, y), X.head(20))
        for name in ("secure", "victim"):
            client.set_registered_model_alias(name, "champion", register(run.run_id, name).version)
        C = pd.DataFrame({"prediction": [1.0, 2.0, 3.0, 4.0], "input.prediction": [0.5, 0.1, 0.2, 0.3], "7": [3.0, 1.0, 2.0, 5.0]})
        with track("security") as run: run.log_model(LinearRegression().fit(C, C["7"]), C)
        client.set_registered_model_alias("collide", "champion", register(run.run_id, "collide").version)
        marker = root/"payload-ran"
        with track("security") as run:
            info = mlflow.sklearn.log_model(LinearRegression().fit(X[["distance"]], y), name="model", serialization_format="pickle")
        folder = Path(mlflow.utils.file_utils.local_file_uri_to_path(mlflow.get_logged_model(info.model_id).artifact_location))
        (folder/"model.pkl").write_bytes(pickle.dumps(Payload(marker)))
        evil = register(info.model_uri, "victim", metrics={"rmse": 1.0}).version
        yield root, marker, int(evil)

@pytest.fixture(scope="module")
def shared(project):
    "The service the payload attacks go to: small time limits so a slow client is cut off quickly."
    s = start(project[0], "models:/secure@champion", "--timeout", "3", "--header-timeout", "2", "--flush-every", "1")
    yield s
    s.stop()

class SteadyClient:
    "A normal client scoring one row at a time against `url` until stopped: statuses and latencies (ms)."
    def __init__(self, url:str):
        self.url, self.seen, self._stop = url, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
    def _run(self):
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self._stop.is_set():
                t = time.perf_counter()
                try: status = c.post("/invocations", json={"dataframe_records": [ROW]}).status_code
                except httpx.HTTPError as e: status = type(e).__name__
                self.seen.append((status, (time.perf_counter() - t) * 1000))
    def __enter__(self): self.thread.start(); return self
    def __exit__(self, *exc): self._stop.set(); self.thread.join(60)
    def p99(self)->float: return statistics.quantiles([ms for _, ms in self.seen], n=100)[98]

def peak_rss_mb(pid:int)->float:
    return int(next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("VmHWM")).split()[1]) / 1024

def parquet(table)->bytes:
    import io, pyarrow.parquet as pq
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()

# --- findings 2 and 3: payloads that stalled or bloated the service -----------------------------------------------

def attack_payloads()->dict:
    import pyarrow as pa
    n = 2_000_000
    return {
        "CSV header of 2M columns (4 MB)": (b"a," * n + b"a\n" + b"1," * 10 + b"1\n", "text/csv", 413),
        "parquet of 2M rows (zstd)": (parquet(pa.table({k: [v] * n for k, v in ROW.items()})), "application/vnd.apache.parquet", 413),
        "parquet repeating a 1 MB string": (parquet(pa.table({"origin": ["x" * 2**20] * 2000, "dest": ["LAX"] * 2000, "carrier": ["AA"] * 2000,
                                                             "distance": [2475] * 2000})), "application/vnd.apache.parquet", 413),
        "120k short records": (json.dumps({"dataframe_records": [{"origin": "JFK"}] * 120_000}).encode(), "application/json", 413),
        "150k rows of inputs": (json.dumps({"inputs": {k: [v] * 150_000 for k, v in ROW.items()}}).encode(), "application/json", 413),
        "int literal of 5000 digits": (b'{"dataframe_records": [{"distance": ' + b"9" * 5000 + b"}]}", "application/json", 400),
        "JSON nested 100k deep": (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
    }

def test_payload_attacks_are_4xx_in_time_while_a_normal_client_is_served(shared, project):
    payloads, answers = attack_payloads(), {}
    before = peak_rss_mb(shared.process.pid)
    with SteadyClient(shared.url) as normal:
        time.sleep(1.0)
        for name, (body, ctype, status) in payloads.items():
            t = time.perf_counter()
            r = httpx.post(f"{shared.url}/invocations", content=body, headers={"Content-Type": ctype}, timeout=60)
            answers[name] = (r.status_code, time.perf_counter() - t, r.json().get("message", "")[:90])
        extra = [ROW | {f"extra_{i}": i} for i in range(8000)]          # 8,000 records, each with a key of its own
        wide = httpx.post(f"{shared.url}/invocations", json={"dataframe_records": extra}, headers={"X-Request-Id": "wide"}, timeout=60)
        time.sleep(1.0)
    print(f"\nattacks during steady scoring (normal client: {len(normal.seen)} requests, p99 {normal.p99():.1f} ms):")
    for name, (status, seconds, message) in answers.items(): print(f"  {name:34} {status} in {seconds:5.2f} s  {message}")
    print(f"  8,000 records with distinct extra keys: {wide.status_code}; server peak RSS {before:.0f} -> {peak_rss_mb(shared.process.pid):.0f} MB")
    assert {n: a[0] for n, a in answers.items()} == {n: p[2] for n, p in payloads.items()}
    assert max(seconds for _, seconds, _ in answers.values()) < 20          # safety net: each is refused before heavy work
    assert wide.status_code == 200 and len(wide.json()["predictions"]) == 8000
    assert {s for s, _ in normal.seen} == {200} and len(normal.seen) > 20
    assert peak_rss_mb(shared.process.pid) < 1500                              # it was 3.3 GB for the wide records alone
    from mlops_nb.prediction_log import read_predictions
    logged = read_predictions(project[0], "secure")
    assert list(logged.columns) == [*ROW, "prediction", "variant", "version", "timestamp", "request_id"]   # no extra_* column
    assert (logged.request_id == "wide").sum() == 8000

# --- finding 9: the small holes -----------------------------------------------------------------------------------

def test_wrong_types_bad_ids_and_oversized_headers_are_refused(shared, project):
    cases = {"a list for a string": ROW | {"origin": ["JFK", "LGA"]}, "a bool for a number": ROW | {"distance": True},
             "a fraction for a whole number": ROW | {"distance": 2475.5}, "an object for a string": ROW | {"carrier": {"x": 1}}}
    for name, row in cases.items():
        r = httpx.post(f"{shared.url}/invocations", json={"dataframe_records": [row]}, headers={"X-Request-Id": "typed"}, timeout=30)
        assert r.status_code == 400 and "must hold" in r.json()["message"], (name, r.text)
    for bad in ("../../etc/passwd x", "x" * 129, "é"):
        r = httpx.post(f"{shared.url}/invocations", json={"dataframe_records": [ROW]}, headers={"X-Request-Id": bad.encode("utf-8")}, timeout=30)
        assert r.status_code == 400 and r.headers.get("X-Request-Id") != bad
    assert httpx.post(f"{shared.url}/invocations", json={"dataframe_records": [ROW]}, headers={"X-Request-Key": "k" * 300}).status_code == 400
    time.sleep(2.5)                                                         # a compaction: typed rows were never logged
    from mlops_nb.prediction_log import read_predictions
    assert "typed" not in set(read_predictions(project[0], "secure").request_id)

def raw(url:str)->socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)

def closed_by(sock:socket.socket, seconds:float)->float|None:
    "The monotonic time at which the server had closed `sock` (what it sends is discarded), None if not within `seconds`."
    start = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(65536) == b"": return time.monotonic()
        except socket.timeout: continue
        except OSError: return time.monotonic()
    return None

def test_slow_clients_are_cut_off_and_a_disconnect_is_no_500(shared):
    with SteadyClient(shared.url) as normal:
        slow = [raw(shared.url) for _ in range(50)]
        for s in slow: s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Slow: ")   # headers never finished
        start = time.monotonic()
        for _ in range(4):                                                    # dribble a byte now and then: it must not help
            time.sleep(0.5)
            for s in slow:
                try: s.sendall(b"a")
                except OSError: pass
        cut = [closed_by(s, 20) for s in slow]
        body = raw(shared.url)                                                # headers done, the body never comes
        body.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data")
        body.settimeout(30)
        answer = b""
        while b"REQUEST_TIMEOUT" not in answer and (chunk := body.recv(65536)): answer += chunk   # headers, then the JSON
        answer = answer.decode(errors="replace")
        gone = raw(shared.url)                                                # leaves in the middle of its body
        gone.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"da")
        time.sleep(0.3)
        gone.close()
        time.sleep(0.5)
    waited = time.monotonic() - start
    closed = [c - start for c in cut if c is not None]
    print(f"\nslow headers: {len(closed)} of 50 connections closed {min(closed):.1f}-{max(closed):.1f} s after they opened (limit 2 s); "
          f"slow body: {answer.splitlines()[0]!r}; normal client p99 {normal.p99():.1f} ms over {len(normal.seen)} requests")
    assert all(c is not None for c in cut), "a connection that never finished its headers stayed open"
    assert waited < 60 and answer.startswith("HTTP/1.1 408") and "REQUEST_TIMEOUT" in answer
    assert {s for s, _ in normal.seen} == {200}
    metrics = httpx.get(f"{shared.url}/metrics").text
    assert 'status="500"' not in metrics
    assert 'mlops_nb_client_disconnects_total{endpoint="invocations"}' in metrics

# --- finding 10: MLflow's scoring server answers the same payloads ---------------------------------------------------------

def compat_payloads()->dict:
    "name -> (body, content type); shared by both servers."
    j = lambda d: json.dumps(d).encode()
    return {
        "records": (j({"dataframe_records": [ROW]}), "application/json"),
        "split": (j({"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())]}}), "application/json"),
        "instances": (j({"instances": [ROW]}), "application/json"),
        "inputs": (j({"inputs": {k: [v] for k, v in ROW.items()}}), "application/json"),
        "csv": (b"origin,dest,carrier,distance\nJFK,LAX,AA,2475\n", "text/csv"),
        "an extra column": (j({"dataframe_records": [ROW | {"zzz": 1}]}), "application/json"),
        "params, model without a params schema": (j({"dataframe_records": [ROW], "params": {"path": "/etc/passwd"}}), "application/json"),
        "params not an object": (j({"dataframe_records": [ROW], "params": [1, 2]}), "application/json"),
        "malformed JSON": (b'{"dataframe_records": [{"origin": "JFK",', "application/json"),
        "empty body": (b"", "application/json"),
        "unknown format": (j({"records": [ROW]}), "application/json"),
        "two formats": (j({"dataframe_records": [ROW], "instances": [ROW]}), "application/json"),
        "not an object": (b"[1, 2, 3]", "application/json"),
        "missing columns": (j({"dataframe_records": [{"origin": "JFK", "dest": "LAX"}]}), "application/json"),
        "csv missing columns": (b"origin,dest\nJFK,LAX\n", "text/csv"),
        "no rows": (j({"dataframe_records": []}), "application/json"),
        "text for a number": (j({"dataframe_records": [ROW | {"distance": "far"}]}), "application/json"),
        "NaN for a number": (b'{"dataframe_records": [{"origin": "JFK", "dest": "LAX", "carrier": "AA", "distance": NaN}]}', "application/json"),
        "int64 overflow": (j({"dataframe_records": [ROW | {"distance": 2**70}]}), "application/json"),
        "chat payload": (j({"messages": [{"role": "user", "content": "hi"}]}), "application/json"),
        "completions payload": (j({"prompt": "hi", "max_tokens": 5}), "application/json"),
        "charset latin-1": (j({"dataframe_records": [ROW]}), "application/json; charset=latin-1"),
        "unsupported content type": (b"origin=JFK", "application/x-www-form-urlencoded"),
        # deliberate differences (README, Security): MLflow accepts or crashes, we refuse with a 4xx
        "a bool for a number": (j({"dataframe_records": [ROW | {"distance": True}]}), "application/json"),
        "a list for a string": (j({"dataframe_records": [ROW | {"origin": ["JFK", "LGA"]}]}), "application/json"),   # this model fails on it too
        "a number for a string": (j({"dataframe_records": [ROW | {"origin": 7}]}), "application/json"),
        "a fraction for a whole number": (j({"dataframe_records": [ROW | {"distance": 2475.5}]}), "application/json"),
        "null in a required column": (j({"dataframe_records": [ROW | {"carrier": None}]}), "application/json"),
        "int literal of 5000 digits": (b'{"dataframe_records": [{"distance": ' + b"9" * 5000 + b"}]}", "application/json"),
    }

OURS_DIFFER = {"a bool for a number": (400, "BAD_REQUEST"),
               "a fraction for a whole number": (400, "BAD_REQUEST"), "null in a required column": (400, "INVALID_PARAMETER_VALUE"),
               "a number for a string": (400, "BAD_REQUEST"),
               "int literal of 5000 digits": (400, "BAD_REQUEST")}

def answer_of(r)->tuple:
    try: doc = r.json()
    except ValueError: doc = None
    return r.status_code, doc.get("error_code") if isinstance(doc, dict) else None, doc.get("predictions") if isinstance(doc, dict) else None

def test_mlflow_scoring_server_gives_the_same_answers_except_where_we_refuse_more(shared, project, monkeypatch):
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server
    from starlette.testclient import TestClient
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project[0]}/mlflow.db")
    theirs = TestClient(scoring_server.init(mlflow.pyfunc.load_model("models:/secure@champion")), raise_server_exceptions=False)
    rows, differ = [], {}
    for name, (body, ctype) in compat_payloads().items():
        ours = answer_of(httpx.post(f"{shared.url}/invocations", content=body, headers={"Content-Type": ctype}, timeout=30))
        mlflow_ = answer_of(theirs.post("/invocations", content=body, headers={"Content-Type": ctype}))
        rows.append(f"  {name:40} ours {ours[0]} {ours[1] or '':24} mlflow {mlflow_[0]} {mlflow_[1] or ''}")
        if name in OURS_DIFFER: differ[name] = (ours[:2], mlflow_[0])
        else: assert ours == mlflow_ if ours[0] != 415 else ours[0] == mlflow_[0], (name, ours, mlflow_)
    print("\n" + "\n".join(rows))
    assert {n: o for n, (o, _) in differ.items()} == OURS_DIFFER
    assert {n: m for n, (_, m) in differ.items()} == {"a bool for a number": 200, "a fraction for a whole number": 200, "a number for a string": 200,
                                                      "null in a required column": 200, "int literal of 5000 digits": 500}

# --- finding 2: a queue of heavy requests: the time limit answers them, a stop does not drain them --------------------------

def test_heavy_burst_is_cut_at_the_time_limit_and_sigint_does_not_drain_the_queue(shared):
    "Runs last on the shared server (it stops it): 40 requests of 60,000 rows each queue up behind one scoring thread."
    body = json.dumps({"dataframe_records": [ROW] * 60_000}).encode()
    answers, lock = [], threading.Lock()
    def post():
        t = time.perf_counter()
        try: status = httpx.post(f"{shared.url}/invocations", content=body, headers={"Content-Type": "application/json"}, timeout=120).status_code
        except httpx.HTTPError as e: status = type(e).__name__
        with lock: answers.append((status, time.perf_counter() - t))
    threads = [threading.Thread(target=post) for _ in range(40)]
    for t in threads: t.start()
    time.sleep(1.0)
    stopping = time.monotonic()
    code = shared.stop()                                                   # SIGINT, as Ctrl-C
    stopped = time.monotonic() - stopping
    for t in threads: t.join(120)
    statuses = sorted({str(s) for s, _ in answers})
    print(f"\nheavy burst: {len(answers)} answered {statuses}, slowest {max(x for _, x in answers):.1f} s; SIGINT stopped the server in {stopped:.1f} s")
    assert code == 0 and stopped < 30          # the queue is dropped (draining it took 40 x the time of one request: minutes)
    # answered, cut by a time limit (408: a body that a busy machine did not read in time, 504: scoring), or cut off by the stop
    assert len(answers) == 40 and all(s in (200, 408, 504) or isinstance(s, str) for s, _ in answers)

# --- finding 4: log columns that collide ---------------------------------------------------------------------------

def test_colliding_columns_are_logged_apart_and_lose_no_other_request(project):
    from mlops_nb.prediction_log import read_predictions
    root = project[0]
    srv = start(root, "models:/collide@champion", "--flush-every", "0.5")
    answered = set()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for i in range(400):
                body = {"dataframe_split": {"columns": ["prediction", "input.prediction", "7"], "data": [[i, 0.5, 1.0]]}}
                if i % 20 == 0: body = {"dataframe_split": {"columns": [7, "7", "prediction", "input.prediction"], "data": [[1, 2, 3, 4]]}}
                r = c.post("/invocations", json=body, headers={"X-Request-Id": f"c-{i}"})
                assert r.status_code == 200, r.text
                answered.add(f"c-{i}")
    finally: assert srv.stop() == 0
    log = read_predictions(root, "collide")
    print(f"\ncolliding columns: {len(answered)} answered, {len(set(log.request_id) & answered)} logged; columns {list(log.columns)}")
    assert set(log.request_id) == answered and len(log) == 400
    assert list(log.columns) == ["input.prediction", "input.input.prediction", "7", "prediction", "variant", "version", "timestamp", "request_id"]
    assert log.set_index("request_id").loc["c-3", "input.prediction"] == 3      # the input called `prediction`, kept apart

# --- finding 5: SIGKILL under load ------------------------------------------------------------------------------------

def test_sigkill_during_steady_load_loses_no_answered_prediction(project):
    from mlops_nb.prediction_log import read_predictions, compact_log
    root = project[0]
    srv = start(root, "models:/victim@champion", "--flush-every", "0.5")   # compactions run during the load
    answered, lock, stop = set(), threading.Lock(), threading.Event()
    def client(k:int):
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            for i in range(100_000):
                if stop.is_set(): return
                rid = f"k{k}-{i}"
                try: r = c.post("/invocations", json={"dataframe_records": [ROW] * (1 + i % 5)}, headers={"X-Request-Id": rid})
                except httpx.HTTPError: return
                if r.status_code == 200:
                    with lock: answered.add(rid)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads: t.start()
    until = time.monotonic() + 120                                            # a safety net: a busy machine answers slower
    while len(answered) < 200 and time.monotonic() < until: time.sleep(0.05)
    srv.process.send_signal(signal.SIGKILL)                                      # no shutdown, no flush
    srv.process.wait(30)
    stop.set()
    for t in threads: t.join(30)
    with lock: got = set(answered)
    seen = set(read_predictions(root, "victim").request_id)                  # parquet files and the dead process's segment
    compacted = compact_log(root/"predictions", "victim")
    after = read_predictions(root)
    print(f"\nSIGKILL under load: {len(got)} predictions answered, {len(got - seen)} missing from the log; "
          f"{len(compacted)} orphaned segment(s) compacted; monitoring reads {len(after)} rows")
    assert len(got) >= 200 and not (got - seen)
    assert got <= set(after.request_id) and not list((root/"predictions").glob("victim-*.jsonl"))

# --- finding 1: a promoted pickle ------------------------------------------------------------------------------------

def test_a_promoted_pickle_is_refused_by_the_running_service_unless_opted_in(project):
    import mlflow
    from mlops_nb.loading import PICKLE_TAG
    root, marker, evil = project
    client = mlflow.MlflowClient()
    srv = start(root, "models:/victim@champion", "--reload-every", "1", env={"MLOPS_NB_SERVE_TOKEN": "t0ken"})
    auth = {"Authorization": "Bearer t0ken"}
    try:
        client.set_registered_model_alias("victim", "champion", evil)       # the promotion the gate let through
        deadline, info = time.monotonic() + 60, {}
        while time.monotonic() < deadline and not info.get("error"):
            info = httpx.get(f"{srv.url}/version", headers=auth, timeout=10).json()
            time.sleep(0.2)
        health, ping = httpx.get(f"{srv.url}/health", timeout=10), httpx.get(f"{srv.url}/ping", timeout=10)
        scored = httpx.post(f"{srv.url}/invocations", json={"dataframe_records": [ROW]}, headers=auth, timeout=10)
    finally: srv.stop()
    print(f"\npromoted pickle: /version error {info.get('error')!r}; /health {health.json()}")
    assert not marker.exists(), "the payload ran in the service"
    assert f"refusing to load models:/victim/{evil}" in info["error"] and "allow_pickle=True" in info["error"]
    assert info["version"] == 1 and scored.status_code == 200 and scored.headers["X-Model-Version"] == "1"
    assert (health.status_code, ping.status_code) == (200, 200)
    assert health.json() == {"status": "ready", "variants": {"champion": {"state": "ready", "version": 1}}}   # no paths, no errors
    opted = start(root, "models:/victim@champion", "--allow-pickle")   # the explicit opt-in: loaded, and recorded
    try: version = httpx.get(f"{opted.url}/version", timeout=10).json()
    finally: opted.stop()
    assert marker.exists() and version["version"] == evil and "stored as 'pickle'" in version["allow_pickle"]
    assert f"loaded models:/victim/{evil} with allow_pickle" in opted.log.read_text()
    assert "stored as 'pickle'" in client.get_model_version("victim", str(evil)).tags[PICKLE_TAG]
    client.set_registered_model_alias("victim", "champion", 1)

def test_the_gate_refuses_a_pickle_even_when_forced_unless_opted_in(project):
    "`force` skips the comparison of scores, never the format check: in Python and on the command line."
    import mlflow
    from mlops_nb.config import MlopsNbError
    from mlops_nb.registry import alias_history, promote
    root, marker, evil = project
    if marker.exists(): marker.rmdir()   # an opted-in test of this module may have run the payload (it makes this folder) in this worker
    for force in (False, True):
        with pytest.raises(MlopsNbError, match=f"refusing to load models:/victim/{evil}.*allow_pickle=True"):
            promote("victim", evil, alias="trial", force=force)
    cli = run(BIN/"mlops-nb", "promote", "victim", evil, "--alias", "trial", "--force", cwd=root, check=False)
    assert cli.returncode == 2 and "allow_pickle=True" in cli.stderr, cli.stderr
    opted = run(BIN/"mlops-nb", "promote", "victim", evil, "--alias", "trial", "--force", "--allow-pickle", cwd=root)
    assert f"trial: version None -> {evil} (promote)" in opted.stdout
    moves = alias_history("victim", alias="trial")
    assert list(moves.action) == ["promote"] and "stored as 'pickle'" in moves.allow_pickle.iloc[0]
    assert not marker.exists()   # the gate reads the MLmodel file only
    mlflow.MlflowClient().delete_registered_model_alias("victim", "trial")
