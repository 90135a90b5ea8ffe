"""Retraining: short replays of the flights months on a sample: a bad window never promoted, a failed training run
survived and recorded. The full replay, re-run from the cache with identical decisions, is the demo's (tests/test_cli.py)."""
from conftest import store_runs
from mlops_nb.config import KIND_TAG, KIND_RETRAINING
from mlops_nb.retraining import RetrainPolicy, SIMULATION_KEYS, simulate

SMALL = dict(sample=0.05, models=[{"family": "linear"}, {"family": "ridge", "alpha": 1.0}], jobs=2)  # seconds per window

class BrokenThenSummer(RetrainPolicy):
    """February: a window that prepare refuses (train_from after train_month), so training fails. Then a deliberately
    bad window: July, whatever month arrived (summer air times for a spring batch)."""
    def window_params(self, month):
        return ({"train_from": 5, "train_month": 1, "valid_month": 2} if month == 2 else
                {"train_from": 7, "train_month": 7, "valid_month": 8})

def test_a_failed_training_run_is_survived_and_a_worse_challenger_from_a_bad_window_is_never_promoted(project, monkeypatch):
    work = project/"sim"
    feb, mar, apr = records = simulate(work, 2, 4, policy=BrokenThenSummer(trigger="always"), **SMALL)
    assert all(set(SIMULATION_KEYS) <= set(r) for r in records)
    assert feb["decision"] == "failed" and not feb["retrained"] and not feb["promoted"] and "train_from" in feb["error"]
    assert [r["champion_version"] for r in records] == [1, 1, 1]             # kept through the failure and the refusals
    assert [r["decision"] for r in (mar, apr)] == ["refused", "refused"] and mar["challenger_version"] == apr["challenger_version"] == 2
    for r in (mar, apr): assert r["rmse_challenger"] > r["rmse_champion"] > 0, r
    client, runs = store_runs(work, "flights-retraining")
    assert sorted(r.data.tags["decision"] for r in runs) == ["failed", "refused", "refused"]
    assert all(r.data.tags[KIND_TAG] == KIND_RETRAINING for r in runs)
    failed = next(r for r in runs if r.data.tags["decision"] == "failed")
    assert "train_from" in failed.data.tags["error"]
    from mlops_nb.config import use_store
    from mlops_nb.registry import history
    use_store(work)
    events = history("flights")
    assert (events.action == "retrain-failed").sum() == 1 and (events.action == "refused").sum() == 2
    from mlops_nb.retraining import RetrainLoop
    monkeypatch.chdir(work)
    loop = RetrainLoop(work/"pipeline.yaml").restore()  # a cron process continues where the decisions left off
    assert (loop.batches, loop.last_retrain) == (3, 3)
