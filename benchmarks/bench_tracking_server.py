"""Tracking server benchmark (issue 10). Prints ratios; run with `make bench` or
`python benchmarks/bench_tracking_server.py`.

Runs per second logged with `track` (one run = 5 params + 5 metrics + 2 tags, no notebook artifact) through an
`mlflow server` on PostgreSQL vs the embedded sqlite store, in interleaved rounds (medians):
1. one process logging runs one after the other;
2. PROCS processes logging at once (what a parallel sweep does; started and warmed up before the clock starts),
   total runs per second.
PostgreSQL is a throwaway cluster from `.ci/postgres` with durable settings (fsync on, like sqlite's default), on its
own folder and a free port; the server runs WORKERS uvicorn workers (default 1, start_server's default; see
nbs/11_tracking_server.ipynb on why more workers add latency per request). Everything runs on this machine: the
server's network hop is loopback, so the ratio is the cost of the REST round trips plus PostgreSQL against sqlite's
file locking.
"""
import os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))
RUNS = int(os.environ.get("BENCH_RUNS", 20))          # runs per round, single process
PROCS, PROC_RUNS = 4, 15                              # parallel: processes x runs each
WORKERS = int(os.environ.get("BENCH_WORKERS", 1))     # uvicorn workers of the server
HERE = Path(__file__).resolve().parent
tmp = Path(tempfile.mkdtemp(prefix="bench_tracking_server_"))
tmp.chmod(0o755)  # the PostgreSQL cluster inside runs as the postgres user
os.chdir(tmp)  # no git checkout here: both sides pay the same (nothing) for git context
(tmp/"mlops_nb.toml").write_text("")

from mlops_nb.tracking_server import start_server, free_port
from mlops_nb.config import ensure_store

PARAMS = {f"p{i}": i * 0.5 for i in range(5)}
METRICS = {f"m{i}": i * 1.5 for i in range(5)}
LOG = f'''
import os, sys, time
from pathlib import Path
from mlops_nb.tracking import track
def one():
    with track("bench", tags={{"team": "flights", "stage": "bench"}}, params={PARAMS!r}, log_notebook=False) as r:
        r.log_metrics({METRICS!r})
one()                                   # imports done, connection open
Path(sys.argv[2] + ".ready." + str(os.getpid())).touch()
while not Path(sys.argv[2]).exists(): time.sleep(0.001)
for i in range(int(sys.argv[1])): one()
'''

def log_runs(uri:str, n:int)->float:
    "Seconds to log n runs in this process through `uri`."
    from mlops_nb.tracking import track
    os.environ["MLFLOW_TRACKING_URI"] = uri
    t = time.perf_counter()
    for _ in range(n):
        with track("bench", tags={"team": "flights", "stage": "bench"}, params=PARAMS, log_notebook=False) as r:
            r.log_metrics(METRICS)
    return time.perf_counter() - t

def log_runs_parallel(uri:str, procs:int, n:int)->float:
    "Seconds for `procs` processes, started and warmed up beforehand, to log n runs each at once."
    env, go = {**os.environ, "MLFLOW_TRACKING_URI": uri}, tmp/f"go-{time.monotonic_ns()}"
    ps = [subprocess.Popen([sys.executable, "-c", LOG, str(n), str(go)], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) for _ in range(procs)]
    while len(list(tmp.glob(f"{go.name}.ready.*"))) < procs:
        assert all(p.poll() is None for p in ps), "a logging process failed to start"
        time.sleep(0.05)
    t = time.perf_counter()
    go.write_text("")
    assert all(p.wait() == 0 for p in ps), "a logging process failed"
    return time.perf_counter() - t

def interleaved(sides:dict, measure, rounds:int)->dict:
    "Median seconds per side, the sides taking turns each round so that machine noise hits all alike."
    for uri in sides.values(): measure(uri)  # warm up: experiment created, connections open
    times = {k: [] for k in sides}
    for _ in range(rounds):
        for k, uri in sides.items(): times[k].append(measure(uri))
    return {k: statistics.median(v) for k, v in times.items()}

def postgres(cmd:str, env:dict)->str:
    done = subprocess.run([str(HERE.parent/".ci"/"postgres"), cmd], env=env, capture_output=True, text=True)
    if done.returncode: sys.exit(f".ci/postgres {cmd} failed: {done.stderr.strip()}")
    return done.stdout.strip()

def main():
    pg_env = {**os.environ, "MLOPS_NB_PG_DIR": str(tmp/"pg"), "MLOPS_NB_PG_PORT": str(free_port()), "MLOPS_NB_PG_DURABLE": "1"}
    db = postgres("start", pg_env)
    try:
        t = time.perf_counter()
        server = start_server(db, tmp/"mlartifacts", port=0, workers=WORKERS, log=tmp/"server.log")
        print(f"mlflow server ({WORKERS} worker{'s' * (WORKERS > 1)}) on PostgreSQL ready in {time.perf_counter() - t:.1f} s")
        with server:
            sides = {"server": server.url, "sqlite": ensure_store(f"sqlite:///{tmp}/mlflow.db")}
            one = interleaved(sides, lambda uri: log_runs(uri, RUNS), ROUNDS)
            par = interleaved(sides, lambda uri: log_runs_parallel(uri, PROCS, PROC_RUNS), max(3, ROUNDS // 2))
    finally: postgres("stop", pg_env)
    rate = lambda d, n: {k: n / v for k, v in d.items()}
    r1, rp = rate(one, RUNS), rate(par, PROCS * PROC_RUNS)
    print(f"1 process, {RUNS} runs x {ROUNDS} rounds: server {r1['server']:.1f} runs/s, sqlite {r1['sqlite']:.1f} runs/s, "
          f"ratio server/sqlite {r1['server'] / r1['sqlite']:.2f}x")
    print(f"{PROCS} processes x {PROC_RUNS} runs at once: server {rp['server']:.1f} runs/s, sqlite "
          f"{rp['sqlite']:.1f} runs/s, ratio server/sqlite {rp['server'] / rp['sqlite']:.2f}x")

if __name__ == "__main__": main()
