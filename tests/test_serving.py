"The model service as a real uvicorn server on 127.0.0.1: MLflow-equal predictions, hot reload, A/B split and log, fuzzing, bad input, token, batch scoring."
import json, math, os, shutil, subprocess, threading, time, uuid
from pathlib import Path
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from conftest import inside_project
from mlops_nb.serving import Service, start_service

httpx = pytest.importorskip("httpx")
REPO = Path(__file__).resolve().parents[1]
TRUSTED = '[models]\ntrusted_types = ["mlops_nb.flights.FlightRecords", "sklearn.tree._tree.Tree"]\n'

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    "A project with three logged flights models (ridge, lasso, and one whose files will be deleted) and March rows."
    with inside_project(tmp_path_factory.mktemp("serving")) as root:
        (root/"mlops_nb.toml").write_text(TRUSTED)   # the flights transformer is the project's own type
        from mlops_nb.config import use_store
        from mlops_nb.flights import load_flights, clean, make_model, FEATURES, TARGET, TRUSTED_TYPES
        from mlops_nb.tracking import track
        use_store(root)
        train, march = clean(load_flights(1)), clean(load_flights(3))
        runs = {}
        for family in ("ridge", "lasso", "broken"):
            with track("serving-tests", params={"family": family}) as run:
                model = make_model("ridge" if family == "broken" else family, alpha=1.0).fit(train[FEATURES], train[TARGET])
                run.log_model(model, march[FEATURES], skops_trusted_types=TRUSTED_TYPES)
            runs[family] = run.run_id
        yield root, runs, march[FEATURES].reset_index(drop=True)

def registered(runs, name:str, champion="ridge", challenger=None)->dict:
    "Register the ridge and lasso runs as versions 1 and 2 of `name`, with the aliases asked for."
    from mlops_nb.registry import register, promote
    versions = {family: register(runs[family], name).version for family in ("ridge", "lasso")}
    promote(name, versions[champion], force=True)
    if challenger: promote(name, versions[challenger], alias="challenger", force=True)
    return versions

def wait_for_variants(svc:Service, n:int, timeout:float=180)->Service:
    "Return once `n` variants are ready (/health answers 200 once the champion is; a challenger may still be loading)."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(v["state"] == "ready" for v in httpx.get(f"{svc.url}/health", timeout=5).json()["variants"].values()) == n: return svc
        time.sleep(0.2)
    raise AssertionError(f"{n} variants not ready after {timeout} s:\n{svc.log.read_text()}")

def start(root:Path, model:str, *options:str, env:dict|None=None, variants:int=1, wait:bool=True)->Service:
    "`mlops-nb serve MODEL OPTIONS` in the project `root`, through the library's `start_service` (stopped with SIGINT, like Ctrl-C)."
    environ = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLOPS_NB_SERVE_TOKEN")} | (env or {})
    svc = start_service(model, *options, cwd=root, env=environ, timeout=180, log=root/f"service-{uuid.uuid4().hex[:8]}.log", wait=wait)
    return wait_for_variants(svc, variants) if wait and variants > 1 else svc

@pytest.fixture
def server(store):
    "Start services in the test's project; every one is stopped after the test."
    started = []
    def start_here(model:str, *options:str, **kwargs)->Service:
        started.append(start(store[0], model, *options, **kwargs))
        return started[-1]
    yield start_here
    for s in started: s.stop()

def records(df)->list: return json.loads(df.to_json(orient="records"))

# --- predictions equal MLflow's ------------------------------------------------------------------------------------

def test_predictions_over_http_equal_pyfunc_predict(store, server):
    import mlflow.pyfunc
    root, runs, march = store
    registered(runs, "equal")
    srv = server("models:/equal@champion")
    rows = march.sample(300, random_state=0).reset_index(drop=True)
    expected = mlflow.pyfunc.load_model("models:/equal/1").predict(rows).tolist()
    recs = records(rows)
    bodies = [("application/json", json.dumps({"dataframe_records": recs})),
              ("application/json", json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}})),
              ("application/json", json.dumps({"instances": recs})),
              ("application/json", json.dumps({"inputs": {c: rows[c].tolist() for c in rows.columns}})),
              ("text/csv", rows.to_csv(index=False))]
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for ctype, body in bodies:
            r = c.post("/invocations", content=body, headers={"Content-Type": ctype})
            assert r.status_code == 200, r.text
            assert r.json() == {"predictions": expected}, ctype     # exactly MLflow's answer
            assert (r.headers["X-Model-Variant"], r.headers["X-Model-Version"]) == ("champion", "1")
        p = c.post("/predict", json=recs[:5]).json()
        assert p["predictions"] == expected[:5] and (p["variant"], p["version"]) == ("champion", 1)
        v = c.get("/version").json()
        assert (v["name"], v["alias"], v["version"], v["run_id"]) == ("equal", "champion", 1, runs["ridge"])
        metrics = c.get("/metrics").text
        assert 'mlops_nb_requests_total{endpoint="invocations",status="200",variant="champion"} 5.0' in metrics
        assert 'mlops_nb_predicted_rows_total{variant="champion"} 1505.0' in metrics
        assert "mlops_nb_request_latency_seconds_bucket" in metrics and 'mlops_nb_model_version{variant="champion"} 1.0' in metrics

def test_health_says_loading_until_the_model_is_loaded(store):
    root, runs, march = store
    registered(runs, "starting")
    srv = start(root, "models:/starting@champion", wait=False)
    seen = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try: h = httpx.get(f"{srv.url}/health", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.02)
                continue
            if h.status_code == 503:   # listening, not ready: scoring requests are refused, not failed
                r = httpx.post(f"{srv.url}/invocations", json={"dataframe_records": [ROW]}, timeout=5)
                seen.append((h.status_code, h.json()["status"], r.status_code if r.status_code != 200 else None))
            else:
                seen.append((h.status_code, h.json()["status"], None))
                break
    finally: srv.stop()
    print(f"\nhealth while starting: {set(seen)}")
    assert seen[-1][:2] == (200, "ready")
    assert all(s in ((503, "loading", 503), (503, "loading", None)) for s in seen[:-1])

# --- hot reload --------------------------------------------------------------------------------------------------

def test_alias_move_switches_version_while_requests_keep_succeeding(store, server):
    from mlops_nb.registry import promote
    root, runs, march = store
    versions = registered(runs, "reload")
    poll = 2.0
    srv = server("models:/reload@champion", "--reload-every", str(poll))
    body = {"dataframe_records": records(march.head(3))}
    seen, stop = [], threading.Event()
    def client():
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/invocations", json=body)
                seen.append((time.monotonic(), r.status_code, r.headers.get("X-Model-Version")))
    t = threading.Thread(target=client)
    t.start()
    try:
        time.sleep(1.0)
        promote("reload", versions["lasso"], force=True)
        moved = time.monotonic()
        switched = None
        while time.monotonic() - moved < poll + 60:
            if httpx.get(f"{srv.url}/version", timeout=10).json()["version"] == versions["lasso"]:
                switched = time.monotonic() - moved
                break
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()
    assert switched is not None, "the service never followed the alias"
    print(f"\n/version switched {switched:.2f} s after the alias moved (poll interval {poll} s, includes loading the model); "
          f"{len(seen)} requests during the test")
    assert switched < poll + 15                                # a poll, plus loading the new version
    assert {s for _, s, _ in seen} == {200}, "a request failed during the reload"
    served = [v for _, _, v in seen]
    assert served[0] == "1" and served[-1] == "2"
    assert served == sorted(served), "answers went back to the old version after the swap"
    assert len(seen) > 50

def test_failed_reload_keeps_the_old_model_and_shows_in_health(store, server):
    import mlflow
    from mlops_nb.config import MlopsNbError
    from mlops_nb.registry import register, promote
    root, runs, march = store
    registered(runs, "fragile")
    srv = server("models:/fragile@champion", "--reload-every", "1")
    broken = register(runs["broken"], "fragile")
    client = mlflow.MlflowClient()
    model_dir = Path(mlflow.utils.file_utils.local_file_uri_to_path(client.get_logged_model(broken.source.split("/")[-1]).artifact_location))
    shutil.rmtree(model_dir)                                   # its files are gone: loading it must fail
    with pytest.raises(MlopsNbError, match="cannot read the MLmodel file"):
        promote("fragile", broken.version, force=True)         # the gate refuses it, forced or not
    client.set_registered_model_alias("fragile", "champion", broken.version)   # plain MLflow does not
    deadline, version = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        version = httpx.get(f"{srv.url}/version", timeout=10).json()
        if version["error"]: break
        time.sleep(0.2)
    health = httpx.get(f"{srv.url}/health", timeout=10)
    assert health.status_code == 200, "the old model still serves, so the service is still ready"
    assert health.json()["variants"]["champion"] == {"state": "ready", "version": 1}     # no error text for probes
    assert version["version"] == 1 and f"models:/fragile/{broken.version}" in version["error"]
    r = httpx.post(f"{srv.url}/invocations", json={"dataframe_records": records(march.head(2))}, timeout=10)
    assert r.status_code == 200 and r.headers["X-Model-Version"] == "1"
    assert 'mlops_nb_model_reloads_total{outcome="failed",variant="champion"}' in httpx.get(f"{srv.url}/metrics").text

# --- A/B split and the prediction log ----------------------------------------------------------------------------------

def test_split_shares_and_every_request_in_the_log(store, server):
    from mlops_nb.prediction_log import read_predictions
    from mlops_nb.config import VARIANT_COLUMN
    root, runs, march = store
    versions = registered(runs, "ab", champion="ridge", challenger="lasso")
    srv = server("models:/ab@champion", "--challenger", "models:/ab@challenger", "--split", "0.5", "--flush-every", "1", variants=2)
    rows = records(march.head(1000))
    answered = {}
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for i, row in enumerate(rows):
            r = c.post("/invocations", json={"dataframe_records": [row]}, headers={"X-Request-Id": f"req-{i}"})
            assert r.status_code == 200, r.text
            answered[f"req-{i}"] = (r.headers["X-Model-Variant"], int(r.headers["X-Model-Version"]), r.json()["predictions"][0])
        sticky = [c.post("/invocations", json={"dataframe_records": [rows[0]]}, headers={"X-Request-Key": "user-7"}).headers["X-Model-Variant"]
                  for _ in range(20)]
    assert len(set(sticky)) == 1, "one key, one variant"
    share = sum(v == "challenger" for v, _, _ in answered.values()) / len(answered)
    print(f"\nchallenger share with split=0.5 over {len(answered)} requests: {share:.3f}")
    assert abs(share - 0.5) <= 0.05
    assert all(ver == versions["lasso" if var == "challenger" else "ridge"] for var, ver, _ in answered.values())
    assert srv.stop() == 0                                     # a graceful stop writes what is left of the log
    log = read_predictions(root, "ab")
    assert len(log) == len(answered) + len(sticky)
    log = log[log.request_id.str.startswith("req-")].set_index("request_id")
    assert set(log.index) == set(answered)
    assert all(log.loc[rid, VARIANT_COLUMN] == var and log.loc[rid, "version"] == ver and math.isclose(log.loc[rid, "prediction"], p)
               for rid, (var, ver, p) in answered.items())
    assert (log.origin.tolist(), log.distance.tolist()) == ([r["origin"] for r in rows], [r["distance"] for r in rows])
    assert list(log.columns) == ["origin", "dest", "carrier", "distance", "prediction", VARIANT_COLUMN, "version", "timestamp"]  # + request_id, the index
    assert str(log.timestamp.dt.tz) == "UTC" and all(p.name.startswith("ab-") for p in (root/"predictions").glob("ab-*.parquet"))

# --- bad input -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared(store):
    "One server for the fuzz and bad-input tests."
    root, runs, march = store
    registered(runs, "fuzz")
    s = start(root, "models:/fuzz@champion", "--max-body", str(2**20))
    yield s
    s.stop()

ROW = {"origin": "JFK", "dest": "LAX", "carrier": "AA", "distance": 2475}
BAD = {
    "malformed JSON": (b'{"dataframe_records": [{"origin": "JFK",', "application/json", 400, "malformed JSON at line 1"),
    "missing columns": (json.dumps({"dataframe_records": [{"origin": "JFK", "dest": "LAX"}]}), "application/json", 400, "missing column(s) ['carrier', 'distance']"),
    "wrong types": (json.dumps({"dataframe_records": [ROW | {"distance": "far"}]}), "application/json", 400, "distance"),
    "empty body": (b"", "application/json", 400, "body is empty"),
    "unknown format": (json.dumps({"records": [ROW]}), "application/json", 400, "exactly one of the keys"),
    "two formats": (json.dumps({"dataframe_records": [ROW], "instances": [ROW]}), "application/json", 400, "exactly one of the keys"),
    "unknown content type": (b"origin=JFK", "application/x-www-form-urlencoded", 415, "unsupported Content-Type"),
    "NaN": (b'{"dataframe_records": [{"origin": "JFK", "dest": "LAX", "carrier": "AA", "distance": NaN}]}', "application/json", 400, "distance"),
    "null": (json.dumps({"dataframe_records": [ROW | {"carrier": None}]}), "application/json", 400, "['carrier'] have missing values"),
    "no rows": (json.dumps({"dataframe_records": []}), "application/json", 400, "no rows"),
    "not an object": (b"[1, 2, 3]", "application/json", 400, "must be an object"),
    "not UTF-8": (b'{"dataframe_records": [{"origin": "\xff"}]}', "application/json", 400, "not UTF-8"),
    "a bool for a number": (json.dumps({"dataframe_records": [ROW | {"distance": True}]}), "application/json", 400, "column 'distance' must hold whole numbers, got true"),
    "a list for a string": (json.dumps({"dataframe_records": [ROW | {"origin": ["JFK", "LGA"]}]}), "application/json", 400, "column 'origin' must hold text, got a list"),
    "bad CSV": (b"origin,dest\nJFK", "text/csv", 400, "missing column(s)"),
    "bad request id": (json.dumps({"dataframe_records": [ROW]}), "application/json", 400, "X-Request-Id"),
}

@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_a_4xx_naming_the_problem(shared, case):
    body, ctype, status, message = BAD[case]
    headers = {"Content-Type": ctype} | ({"X-Request-Id": "../../etc/passwd !"} if case == "bad request id" else {})
    r = httpx.post(f"{shared.url}/invocations", content=body, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    assert message in r.json()["message"], r.json()
    assert httpx.get(f"{shared.url}/health").status_code == 200

def test_oversized_bodies_are_refused_declared_or_streamed(shared):
    big = json.dumps({"dataframe_records": [ROW] * 30_000}).encode()       # about 2 MB, the limit is 1 MiB
    r = httpx.post(f"{shared.url}/invocations", content=big, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "larger than 1048576 bytes" in r.json()["message"]
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))     # no Content-Length: chunked
    r = httpx.post(f"{shared.url}/invocations", content=chunks, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413
    ok = httpx.post(f"{shared.url}/invocations", json={"dataframe_records": [ROW] * 1000}, timeout=30)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1000

_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                            lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
                            max_leaves=20)
_field = st.sampled_from(list(ROW) + ["", "x", "distance "])
_record = st.dictionaries(_field, _json_values, max_size=6) | st.fixed_dictionaries({k: _json_values for k in ROW})
_payload = st.one_of(
    st.binary(max_size=300),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["dataframe_records", "dataframe_split", "instances", "inputs", "params", "records"]),
                    _json_values | st.lists(_record, max_size=3), min_size=1, max_size=2).map(lambda d: json.dumps(d).encode()),
    st.lists(_record, min_size=1, max_size=3).map(lambda rs: json.dumps({"dataframe_records": rs}).encode()),
    st.lists(_record, max_size=3).map(lambda rs: json.dumps(rs).encode()),
    st.text(max_size=200).map(str.encode),
    st.builds(lambda k, v: json.dumps({"dataframe_records": [ROW | {k: v}]}).encode(), st.sampled_from(list(ROW)), _json_values),
    st.builds(lambda k, v: json.dumps([ROW | {k: v}]).encode(), st.sampled_from(list(ROW)), _json_values))
_ctype = st.sampled_from(["application/json"] * 6 + ["text/csv", "application/vnd.apache.parquet", "text/plain",
                          "application/json; charset=latin-1", "application/json; format=pandas-split", ""])

FUZZED = []
FUZZ_EXAMPLES = int(os.environ.get("MLOPS_NB_FUZZ_EXAMPLES", 300))   # more for a deeper search: MLOPS_NB_FUZZ_EXAMPLES=5000

@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=_payload, ctype=_ctype, path=st.sampled_from(["/invocations", "/predict"]))
def test_fuzz_malformed_payloads_never_5xx(shared, body, ctype, path):
    r = httpx.post(f"{shared.url}{path}", content=body, headers={"Content-Type": ctype} if ctype else {}, timeout=30)
    FUZZED.append(r.status_code)
    assert r.status_code < 500, (body, ctype, r.text)
    if r.status_code >= 400: assert r.json()["message"]

def test_fuzzed_server_is_alive_and_counted(shared):
    if not FUZZED: pytest.skip("runs after test_fuzz_malformed_payloads_never_5xx")
    assert len(FUZZED) == FUZZ_EXAMPLES and max(FUZZED) < 500
    print(f"\nfuzz: {len(FUZZED)} payloads, statuses {sorted(set(FUZZED))}, {sum(s >= 400 for s in FUZZED)} refused")
    assert httpx.get(f"{shared.url}/health").json()["status"] == "ready"
    assert httpx.post(f"{shared.url}/invocations", json={"dataframe_records": [ROW]}).status_code == 200
    assert 'status="500"' not in httpx.get(f"{shared.url}/metrics").text

# --- security ---------------------------------------------------------------------------------------------------------

def test_token_from_the_environment_guards_everything_but_the_probes(store, server):
    root, runs, march = store
    registered(runs, "guarded")
    srv = server("models:/guarded@champion", env={"MLOPS_NB_SERVE_TOKEN": "t0ken"})
    body = {"dataframe_records": [ROW]}
    assert httpx.get(f"{srv.url}/health").status_code == 200 and httpx.get(f"{srv.url}/ping").status_code == 200
    for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "t0ken"}):
        for method, path in [("GET", "/version"), ("GET", "/metrics"), ("POST", "/invocations"), ("POST", "/predict"), ("GET", "/nowhere")]:
            r = httpx.request(method, f"{srv.url}{path}", json=body, headers=auth)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "bearer token" in r.json()["message"]
    ok = {"Authorization": "Bearer t0ken"}
    assert httpx.post(f"{srv.url}/invocations", json=body, headers=ok).status_code == 200
    assert httpx.get(f"{srv.url}/version", headers=ok).json()["name"] == "guarded"
    assert httpx.get(f"{srv.url}/docs", headers=ok).status_code == 404    # no unauthenticated or extra surface

def test_binds_loopback_by_default(store, server):
    root, runs, march = store
    registered(runs, "local")
    srv = server("models:/local@champion")
    port = srv.url.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
    if out: assert f"127.0.0.1:{port}" in out and f"0.0.0.0:{port}" not in out
    assert " on http://127.0.0.1:" in srv.log.read_text()

# --- batch scoring -----------------------------------------------------------------------------------------------------

def test_score_files_in_chunks(store):
    import mlflow.pyfunc, numpy as np, pandas as pd
    from mlops_nb.serving import score
    root, runs, march = store
    registered(runs, "batch")
    expected = mlflow.pyfunc.load_model("models:/batch/1").predict(march)
    march.to_parquet(root/"march.parquet")
    march.to_csv(root/"march.csv", index=False)
    for src, dst in [("march.parquet", "scored.parquet"), ("march.csv", "scored.csv"), ("march.parquet", "scored-from-parquet.csv")]:
        out = score("models:/batch@champion", root/src, root/"out"/dst, chunk_rows=5000, progress=False)
        got = pd.read_parquet(out) if dst.endswith(".parquet") else pd.read_csv(out)
        assert len(got) == len(march) and list(got.columns) == list(march.columns) + ["prediction"]
        assert np.allclose(got.prediction, expected, rtol=0, atol=1e-9), dst
    pd.testing.assert_frame_equal(pd.read_parquet(root/"out"/"scored.parquet").drop(columns="prediction"), march)
