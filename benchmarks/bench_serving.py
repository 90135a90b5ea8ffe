"""Model service vs `mlflow models serve`: the same registered flights model, the same machine, interleaved runs.

Both servers run one uvicorn worker on 127.0.0.1 (MLflow with `--env-manager local`); ours as `serve` starts it by
default: the prediction log with its durability (each request's rows written to the operating system before the
answer), Prometheus metrics, the request limits (bytes, rows, columns, types, time), the slow-client timeout, and the
model loaded through the safe loader (skops, the project's trusted types). The load generator is `wrk` (apt-get install wrk) when present, else an async httpx
client; it sends single-row and 100-row `dataframe_records` requests over 8 connections for SECONDS per measurement.
Prints throughput and p50/p99 latency per server and the ratios ours/MLflow (targets: throughput >= 1.3x, p99 <= 0.5x).

    python benchmarks/bench_serving.py [--seconds 10] [--rounds 2] [--connections 8]
"""
import argparse, asyncio, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]

def free_port()->int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def make_project(root:Path):
    "A project with a ridge flights model registered as flights@champion."
    code = """
from mlops_nb.flights import load_flights, clean, make_model, FEATURES, TARGET, TRUSTED_TYPES
from mlops_nb.tracking import track
from mlops_nb.registry import register, promote
train = clean(load_flights(1))
with track("bench-serving") as run:
    run.log_model(make_model("ridge", alpha=1.0).fit(train[FEATURES], train[TARGET]), train[FEATURES], skops_trusted_types=TRUSTED_TYPES)
promote("flights", register(run.run_id, "flights").version, force=True)
clean(load_flights(2))[FEATURES].head(100).to_json("rows.json", orient="records")
"""
    subprocess.run([sys.executable, "-c", code], cwd=root, env=env(root), check=True, capture_output=True)

def env(root:Path, **extra)->dict:
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    e["PYTHONPATH"] = f"{REPO}{os.pathsep}{e.get('PYTHONPATH', '')}"
    e["PATH"] = f"{BIN}{os.pathsep}{e['PATH']}"
    return e | extra

def start_mlflow(root:Path, port:int):
    return subprocess.Popen([str(BIN/"mlflow"), "models", "serve", "-m", "models:/flights@champion", "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=root, env=env(root, MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def stop(proc):
    proc.send_signal(signal.SIGINT)
    try: proc.wait(30)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()

def _ms(text:str)->float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[unit]

def run_wrk(port:int, body:str, seconds:int, connections:int, workdir:Path)->dict:
    script = workdir/"post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = {json.dumps(body)}\n")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/invocations"], capture_output=True, text=True, check=True).stdout
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), "p50": _ms(pct["50"]), "p99": _ms(pct["99"]),
            "failed": int(bad[1]) if bad else 0, "socket_errors": errors[1] if errors else ""}

async def _httpx_load(port:int, body:str, seconds:int, connections:int)->dict:
    import httpx
    latencies, failed, deadline = [], 0, time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=httpx.Limits(max_connections=connections)) as client:
        async def worker():
            nonlocal failed
            while time.monotonic() < deadline:
                t = time.perf_counter()
                r = await client.post("/invocations", content=body, headers={"Content-Type": "application/json"})
                latencies.append((time.perf_counter() - t) * 1000)
                failed += r.status_code != 200
        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - start
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49], "p99": q[98], "failed": failed, "socket_errors": ""}

def measure(port, body, seconds, connections, workdir):
    if shutil.which("wrk"): return run_wrk(port, body, seconds, connections, workdir)
    return asyncio.run(_httpx_load(port, body, seconds, connections))

def check_same(ports:dict, rows:list):
    "Both servers give the same predictions for the same rows."
    import httpx
    answers = {name: httpx.post(f"http://127.0.0.1:{p}/invocations", json={"dataframe_records": rows}, timeout=30).json()["predictions"]
               for name, p in ports.items()}
    assert answers["ours"] == answers["mlflow"], "the two servers disagree"

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10, help="duration of each measurement")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (ours, mlflow, ours, mlflow, ...)")
    ap.add_argument("--connections", type=int, default=8, help="concurrent connections of the load generator")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root/"mlops_nb.toml").write_text('[models]\ntrusted_types = ["mlops_nb.flights.FlightRecords"]\n')   # the flights transformer
        make_project(root)
        rows = json.loads((root/"rows.json").read_text())
        bodies = {"1 row": json.dumps({"dataframe_records": rows[:1]}), "100 rows": json.dumps({"dataframe_records": rows[:100]})}
        from mlops_nb.serving import start_service, wait_healthy
        ours = start_service("models:/flights@champion", cwd=root, env=env(root), timeout=180, log=root/"ours.log")
        ports = {"ours": int(ours.url.rsplit(":", 1)[1]), "mlflow": free_port()}
        theirs = start_mlflow(root, ports["mlflow"])
        try:
            wait_healthy(f"http://127.0.0.1:{ports['mlflow']}", theirs, timeout=180)
            check_same(ports, rows)
            results = {(size, name): [] for size in bodies for name in ports}
            print(f"load generator: {'wrk' if shutil.which('wrk') else 'httpx'}, {args.connections} connections, "
                  f"{args.seconds} s per measurement, {args.rounds} rounds", flush=True)
            for r in range(args.rounds):
                for size, body in bodies.items():
                    for name in (("ours", "mlflow") if r % 2 == 0 else ("mlflow", "ours")):
                        res = measure(ports[name], body, args.seconds, args.connections, root)
                        results[size, name].append(res)
                        print(f"  round {r + 1} {size:>8} {name:>6}: {res['rps']:7.1f} req/s  p50 {res['p50']:6.1f} ms  "
                              f"p99 {res['p99']:6.1f} ms  failed {res['failed']}", flush=True)
        finally:
            ours.stop()
            stop(theirs)
        from mlops_nb.prediction_log import read_predictions
        answered = sum(x["rps"] * args.seconds * (100 if size == "100 rows" else 1) for (size, name), xs in results.items() if name == "ours" for x in xs)
        print(f"\nprediction log: {len(read_predictions(root)):,} rows in {len(list((root/'predictions').glob('*.parquet')))} parquet files "
              f"(about {answered:,.0f} answered during the measurements, plus the checks)")
        print(f"\n{'payload':>8}  {'ours req/s':>10} {'mlflow req/s':>12} {'ratio':>6}   {'ours p50':>8} {'mlflow p50':>10}   "
              f"{'ours p99':>8} {'mlflow p99':>10} {'ratio':>6}")
        for size in bodies:
            agg = {name: {k: statistics.median(x[k] for x in results[size, name]) for k in ("rps", "p50", "p99")} for name in ports}
            o, m = agg["ours"], agg["mlflow"]
            print(f"{size:>8}  {o['rps']:10.1f} {m['rps']:12.1f} {o['rps'] / m['rps']:5.2f}x   {o['p50']:6.1f}ms {m['p50']:8.1f}ms   "
                  f"{o['p99']:6.1f}ms {m['p99']:8.1f}ms {o['p99'] / m['p99']:5.2f}x")
        print("targets: throughput ratio >= 1.3x, p99 ratio <= 0.5x (medians over rounds)")

if __name__ == "__main__":
    main()
