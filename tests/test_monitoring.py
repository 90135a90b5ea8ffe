"Monitoring: real degradation on the flights, known synthetic shifts found, no false alarms beyond the nominal rate, edge cases, the prediction log, one MLflow run per batch."
import os
import numpy as np, pandas as pd
import pytest
from conftest import store_runs
from mlops_nb.config import KIND_TAG, KIND_MONITORING, PREDICTION_LOG, MlopsNbError
from mlops_nb.drift import drift, dataset_drift, performance
from mlops_nb.monitoring import Monitor, join_labels, checked_batches
from mlops_nb.prediction_log import read_predictions

# ------------------------------------------------------------------ the flights: a January model through the year
@pytest.fixture(scope="module")
def flights_year():
    "A ridge model trained on January 2013, checked on every later month (January is the reference)."
    from mlops_nb.flights import load_flights, clean, make_model, FEATURES, TARGET
    df = clean(load_flights())
    jan = df[df.month == 1]
    model = make_model("ridge", alpha=1.0).fit(jan[FEATURES], jan[TARGET])
    mon = Monitor(jan[FEATURES + [TARGET]], model=model, target=TARGET, experiment=None)
    reports = {m: mon.check(df[df.month == m][FEATURES + [TARGET]], name=f"{m:02d}") for m in range(2, 13)}
    return mon, reports

def test_flights_summer_rmse_rises_well_above_january_and_february(flights_year):
    mon, reports = flights_year
    rmse = {m: r.metrics["rmse"] for m, r in reports.items()}
    # measured: Jan 10.24 (baseline), Feb 10.97, Mar 12.78, Apr 12.39, May 18.24, Jun 17.36, Jul 20.75, Aug 19.00,
    # Sep 20.28, Oct 14.75, Nov 10.82, Dec 11.28
    assert 10.0 < mon.baseline["rmse"] < 10.5 and 10.5 < rmse[2] < 11.5
    for m in range(5, 10): assert rmse[m] > 1.6 * mon.baseline["rmse"] and rmse[m] > 1.5 * rmse[2], (m, rmse[m])
    assert rmse[7] > 20 and max(rmse, key=rmse.get) == 7

def test_flights_summer_months_are_flagged_and_winter_ones_are_not(flights_year):
    _, reports = flights_year
    verdicts = {m: r.verdict for m, r in reports.items()}
    assert all(verdicts[m] == "performance_drop" for m in range(3, 11)), verdicts
    assert verdicts[2] == "ok" and verdicts[11] == "ok"
    assert all(reports[m].degradation > 0.6 for m in range(5, 10))
    assert all(reports[m].metrics["bias"] > 10 for m in range(5, 10))   # predicted too long: summer winds

# ------------------------------------------------------------------ known synthetic shifts
def normal(n, seed, shift=0.0): return pd.DataFrame({"x": np.random.default_rng(seed).normal(shift, 1, n)})
def cats(n, seed, swap=False):
    p = [0.5, 0.3, 0.2] if not swap else [0.3, 0.5, 0.2]
    return pd.DataFrame({"c": np.random.default_rng(seed).choice(["a", "b", "c"], n, p=p)})

@pytest.mark.parametrize("n, test", [(500, "ks"), (20_000, "wasserstein")])
def test_a_shifted_normal_is_found(n, test):
    t = drift(normal(n, 1), normal(n, 2, shift=0.5))
    assert t.test[0] == test and t.drifted[0]

@pytest.mark.parametrize("n, test", [(800, "chisquare"), (20_000, "jensenshannon")])
def test_swapped_category_frequencies_are_found(n, test):
    t = drift(cats(n, 1), cats(n, 2, swap=True))
    assert t.test[0] == test and t.drifted[0]

def false_alarm_rate(make, n, seeds=200, n_cur=None):
    return np.mean([drift(make(n, 2 * s), make(n_cur or n, 2 * s + 1), n_jobs=1).drifted[0] for s in range(seeds)])

def test_false_alarm_rate_of_ks_is_near_nominal():
    assert 0.02 <= false_alarm_rate(normal, 500) <= 0.09

def test_false_alarm_rate_of_chisquare_is_near_nominal_for_batches_smaller_than_the_reference():
    assert 0.02 <= false_alarm_rate(cats, 1000, n_cur=100) <= 0.09

def test_chisquare_like_evidentlys_overstates_drift_for_batches_as_large_as_the_reference():
    "Evidently's chi² takes the reference shares as exact: with equal sizes the variance doubles, ~20 % false alarms."
    assert 0.12 <= false_alarm_rate(cats, 500) <= 0.30

def test_no_alarm_from_distances_on_unchanged_large_samples():
    assert false_alarm_rate(normal, 5000, seeds=30) == 0 and false_alarm_rate(cats, 5000, seeds=30) == 0

def test_dataset_drift_needs_half_of_the_columns():
    ref = pd.concat([normal(3000, 1), cats(3000, 2)], axis=1)
    one = drift(ref, pd.concat([normal(3000, 3, shift=1.0), cats(3000, 4)], axis=1))
    both = drift(ref, pd.concat([normal(3000, 3, shift=1.0), cats(3000, 4, swap=True)], axis=1))
    assert dataset_drift(one) and dataset_drift(both) and not dataset_drift(one, share=0.6)

# ------------------------------------------------------------------ edge cases
def test_nan_constant_and_unseen_categories():
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.normal(size=n)
    ref = pd.DataFrame({"nan": np.where(rng.random(n) < 0.3, np.nan, x), "const": 5.0, "city": rng.choice(["NYC", "BOS"], n),
                        "inf": np.where(rng.random(n) < 0.1, np.inf, x)})
    cur = pd.DataFrame({"nan": rng.normal(size=n), "const": 5.0, "city": rng.choice(["NYC", "BOS", "SFO", None], n),
                        "inf": rng.normal(size=n)})
    t = drift(ref, cur).set_index("column")
    assert 0.25 < t.missing_ref["nan"] < 0.35 and not t.drifted["nan"]
    assert t.distance["const"] == 0 and not t.drifted["const"]
    assert 0.28 < t.unseen["city"] < 0.39 and t.drifted["city"] and 0.2 < t.missing_cur["city"] < 0.3
    assert 0.05 < t.missing_ref["inf"] < 0.15 and not t.drifted["inf"]
    assert t.notna().all().drop(["p_value"]).all()

def test_a_column_that_empties_is_an_alarm_and_bad_inputs_are_refused():
    t = drift(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), pd.DataFrame({"x": [np.nan] * 3}))
    assert t.test[0] == "empty" and t.drifted[0]
    t = drift(pd.DataFrame({"x": [np.nan] * 3}), pd.DataFrame({"x": [np.nan] * 3}))
    assert t.test[0] == "empty" and not t.drifted[0]
    with pytest.raises(MlopsNbError, match="share no columns"): drift(pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [1]}))
    with pytest.raises(MlopsNbError, match="unknown drift test"): drift(normal(10, 1), normal(10, 2), method="t-test")
    with pytest.raises(MlopsNbError, match="categorical="): drift(cats(10, 1), cats(10, 2), categorical=[])

def test_performance_for_regression_and_classification():
    assert performance([1.0, 2.0, 3.0], [2.0, 2.0, 4.0]) == {"rmse": np.sqrt(2 / 3), "mae": 2 / 3, "bias": 2 / 3, "n": 3}
    m = performance([True, False, True, True], [True, True, True, False])
    assert m["accuracy"] == 0.5 and np.isclose(m["f1"], 2 / 3)

# ------------------------------------------------------------------ the prediction log, labels later
def write_log(root, n=600, seed=0, shift=0.0, files=3):
    "A prediction log in the service's schema: inputs, prediction, variant, version, timestamp, request_id."
    rng = np.random.default_rng(seed)
    folder = root/PREDICTION_LOG
    folder.mkdir(parents=True, exist_ok=True)
    x = rng.normal(shift, 1, n)
    df = pd.DataFrame({"x": x, "carrier": rng.choice(["AA", "UA"], n), "prediction": 2 * x,
                       "variant": rng.choice(["champion", "challenger"], n, p=[0.9, 0.1]), "version": "1",
                       "timestamp": pd.date_range("2024-06-01", periods=n, freq="min", tz="UTC"),
                       "request_id": [f"req-{seed}-{i}" for i in range(n)]})
    for i, rows in enumerate(np.array_split(np.arange(n), files)): df.iloc[rows].to_parquet(folder/f"part-{seed}-{i}.parquet")
    return df.assign(y=2 * x + rng.normal(0, 0.3, n) + (3 * shift))

def test_prediction_log_is_read_filtered_and_joined_with_late_labels(tmp_path):
    truth = write_log(tmp_path)
    log = read_predictions(tmp_path)
    assert len(log) == 600 and log.request_id.is_unique and log.timestamp.is_monotonic_increasing
    assert len(read_predictions(tmp_path, since="2024-06-01 01:00", until="2024-06-01 02:00")) == 60
    assert set(read_predictions(tmp_path, variant="challenger").variant) == {"challenger"}
    joined = join_labels(log, truth[["request_id", "y"]].sample(200, random_state=0))
    assert len(joined) == 600 and joined.y.notna().sum() == 200
    with pytest.raises(MlopsNbError, match="no prediction log"): read_predictions(tmp_path/"elsewhere")

def test_monitor_reads_the_log_folder_and_judges_once_labels_arrive(tmp_path):
    reference = write_log(tmp_path/"ref", seed=1)
    truth = write_log(tmp_path/"live", seed=2, shift=1.0)
    mon = Monitor(reference.drop(columns=["variant", "version", "timestamp", "request_id"]), target="y", experiment=None)
    assert mon.columns == ["x", "carrier"] and mon.baseline["n"] == 600
    early = mon.check(tmp_path/"live"/PREDICTION_LOG)
    assert early.verdict == "drift" and early.drifted == ["x"] and early.prediction["drifted"] and early.metrics == {}
    late = mon.check(tmp_path/"live"/PREDICTION_LOG, labels=truth[["request_id", "y"]])
    assert late.verdict == "performance_drop" and late.metrics["n"] == 600 and late.degradation > 5

# ------------------------------------------------------------------ MLflow: one run per batch
def test_each_batch_is_one_tagged_mlflow_run_with_its_metrics(project):
    rng = np.random.default_rng(0)
    class Model:
        def predict(self, X): return 2 * X["x"].to_numpy()
    def batch(n, shift=0.0, slope=2.0):
        x = rng.normal(shift, 1, n)
        return pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], n), "y": slope * x + rng.normal(0, 0.5, n)})
    mon = Monitor(batch(3000), model=Model(), target="y", root=project)
    reports = [mon.check(batch(1000), name="w1"), mon.check(batch(1000, 0.8), name="w2"), mon.check(batch(1000, 0, 3.0), name="w3")]
    assert [r.verdict for r in reports] == ["ok", "drift", "performance_drop"]
    client, runs = store_runs(project, "monitoring")
    assert len(runs) == 3 and client.get_experiment_by_name("monitoring").tags[KIND_TAG] == KIND_MONITORING
    by_name = {r.data.tags["mlops_nb.batch"]: r for r in runs}
    for report in reports:
        run = by_name[report.name]
        assert run.info.run_id == report.run_id and run.info.status == "FINISHED"
        assert run.data.tags[KIND_TAG] == KIND_MONITORING and run.data.tags["mlops_nb.verdict"] == report.verdict
        assert {"rmse", "mae", "bias", "baseline_rmse", "drift_share", "n_drifted", "drift.x", "drift.c", "prediction_drift"} <= set(run.data.metrics)
        assert run.data.metrics["rmse"] == pytest.approx(report.metrics["rmse"])
    h = checked_batches(root=project)
    assert list(h.batch) == ["w1", "w2", "w3"] and list(h.verdict) == ["ok", "drift", "performance_drop"]
    assert not (project.parent/"mlflow.db").exists() and not os.path.exists("mlflow.db")

def test_monitor_loads_a_registered_champion(project, monkeypatch):
    monkeypatch.chdir(project)
    from sklearn.linear_model import LinearRegression
    from mlops_nb.tracking import track
    from mlops_nb.registry import register, promote
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=500)})
    y = 3 * X.x + rng.normal(0, 0.1, 500)
    with track("train") as run: run.log_model(LinearRegression().fit(X, y), X)
    promote("m", register(run.run_id, "m").version)
    ref = X.assign(y=y)
    mon = Monitor(ref, model="models:/m@champion", target="y", experiment=None)
    assert mon.baseline["rmse"] < 0.2
    report = mon.check(ref.assign(y=4 * ref.x))
    assert report.verdict == "performance_drop"
    with pytest.raises(MlopsNbError, match="cannot load model"): Monitor(ref, model="models:/nope@champion", experiment=None)

def test_report_renders_html_and_json(tmp_path):
    mon = Monitor(normal(3000, 1).assign(c=cats(3000, 2).c), experiment=None)
    report = mon.check(normal(3000, 3, shift=1).assign(c=cats(3000, 4, swap=True).c))
    page = report.to_html(tmp_path/"r.html").read_text()
    assert report.verdict == "drift" and "<img" in page and "drift" in report._repr_html_()
    import json
    assert json.loads(json.dumps(report.to_dict()))["drifted"] == ["x", "c"]
