"""Retraining: short replays of the flights months on a sample: a bad window never promoted, a failed training run
survived and recorded. The full replay, re-run from the cache with identical decisions, is the demo's (tests/test_cli.py)."""
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

def test_a_worse_challenger_from_a_bad_window_is_never_promoted(project):
    records = simulate(project/"sim", 2, 3, policy=SummerWindow(trigger="always"), **SMALL)
    assert [r["decision"] for r in records] == ["refused", "refused"]
    assert not any(r["promoted"] for r in records) and {r["champion_version"] for r in records} == {1}
    for r in records: assert r["rmse_challenger"] > r["rmse_champion"] > 0, r

def test_a_failed_training_run_keeps_the_champion_and_the_next_batch_proceeds(project, monkeypatch):
    work = project/"sim"
    feb, mar = simulate(work, 2, 3, policy=BrokenInFebruary(trigger="always"), **SMALL)
    assert all(set(SIMULATION_KEYS) <= set(r) for r in (feb, mar))
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
