"Retraining: a short replay of the flights months on a sample: repeatable and cached, a bad window never promoted, a failed training run survived, every decision tagged."
from pathlib import Path
from conftest import store_runs
from mlops_nb.config import KIND_TAG, KIND_RETRAINING
from mlops_nb.retraining import RetrainPolicy, SIMULATION_KEYS, simulate

SMALL = dict(sample=0.05, models=[{"family": "linear"}, {"family": "ridge", "alpha": 1.0}], jobs=2)  # seconds per window

class SummerWindow(RetrainPolicy):
    "A deliberately bad window: July, whatever month arrived (summer air times for a winter batch)."
    def window_params(self, month): return {"train_from": 7, "train_month": 7, "valid_month": 8}

class BrokenInFebruary(RetrainPolicy):
    "A window that prepare refuses (train_from after train_month) for the February batch, the policy's own after."
    def window_params(self, month):
        return {"train_from": 5, "train_month": 1, "valid_month": 2} if month == 2 else super().window_params(month)

def _executed(work:Path, after:set)->set:
    "Names of the notebooks executed in pipeline run folders not in `after`."
    return {nb.name for folder in work.glob("runs/*/*") if folder not in after for nb in folder.glob("*.ipynb")}

def test_rerun_gives_identical_decisions_from_cached_steps_and_decisions_are_tagged(project):
    work = project/"sim"
    first = simulate(work, 2, 4, policy=RetrainPolicy(trigger="always"), **SMALL)
    assert [r["month"] for r in first] == [2, 3, 4] and all(set(SIMULATION_KEYS) <= set(r) for r in first)
    assert first[0]["decision"] == "unchanged"  # February's window is the initial model's: the same cached run, the same version
    assert all(r["retrained"] for r in first) and any(r["promoted"] for r in first)
    for before, after in zip(first, first[1:]):  # a month is served by the champion chosen after the month before it
        assert after["champion_version"] == (before["challenger_version"] if before["promoted"] else before["champion_version"])
    folders = set(work.glob("runs/*/*"))
    second = simulate(work, 2, 4, policy=RetrainPolicy(trigger="always"), **SMALL)
    keys = [*SIMULATION_KEYS, "decision", "challenger_version", "rmse_challenger"]
    assert [{k: r[k] for k in keys} for r in second] == [{k: r[k] for k in keys} for r in first]
    assert _executed(work, folders) == {"register.ipynb"}  # prepare, vectorize and train all came from the cache
    client, runs = store_runs(work, "flights-retraining")
    assert len(runs) == 6 and all(r.data.tags[KIND_TAG] == KIND_RETRAINING for r in runs)
    from mlops_nb.config import use_store
    from mlops_nb.registry import history
    use_store(work)
    events = history("flights", alias="champion")
    assert events.reason.str.contains("retraining after month").any()
    assert events.reason.str.contains("simulation start").any()  # the reset before the second replay

def test_a_worse_challenger_from_a_bad_window_is_never_promoted(project):
    records = simulate(project/"sim", 2, 3, policy=SummerWindow(trigger="always"), **SMALL)
    assert [r["decision"] for r in records] == ["refused", "refused"]
    assert not any(r["promoted"] for r in records) and {r["champion_version"] for r in records} == {1}
    for r in records: assert r["rmse_challenger"] > r["rmse_champion"] > 0, r

def test_a_failed_training_run_keeps_the_champion_and_the_next_batch_proceeds(project, monkeypatch):
    work = project/"sim"
    feb, mar = simulate(work, 2, 3, policy=BrokenInFebruary(trigger="always"), **SMALL)
    assert feb["decision"] == "failed" and not feb["retrained"] and not feb["promoted"] and "train_from" in feb["error"]
    assert mar["champion_version"] == feb["champion_version"] == 1  # kept
    assert mar["retrained"] and mar["decision"] in ("promoted", "refused") and mar["challenger_version"] == 2
    client, runs = store_runs(work, "flights-retraining")
    failed = [r for r in runs if r.data.tags["decision"] == "failed"]
    assert len(failed) == 1 and "train_from" in failed[0].data.tags["error"] and failed[0].data.tags[KIND_TAG] == KIND_RETRAINING
    from mlops_nb.config import use_store
    from mlops_nb.registry import history
    use_store(work)
    assert (history("flights").action == "retrain-failed").sum() == 1
    from mlops_nb.retraining import RetrainLoop
    monkeypatch.chdir(work)
    loop = RetrainLoop(work/"pipeline.yaml").restore()  # a cron process continues where the decisions left off
    assert (loop.batches, loop.last_retrain) == (2, 2)
