"""Retraining: the generic loop on the flights template (a sample, two models): a failed training run is survived
and recorded, a deliberately bad window is never promoted. The full replay, re-run from the cache with identical
decisions, is the demo's (tests/test_cli.py); the loop on another project is in tests/test_templates.py."""
from conftest import store_runs
from mlops_nb.config import KIND_TAG, KIND_RETRAINING
from mlops_nb.flights import month_batch
from mlops_nb.retrain_policy import RetrainPolicy
from mlops_nb.retraining import RetrainLoop
from mlops_nb.scaffold import copy_template

SAMPLE, MODELS = 0.05, [{"family": "linear"}, {"family": "ridge", "alpha": 1.0}]

def broken_then_summer(last, valid, length):
    """February: a window that prepare refuses (train_from after train_month), so training fails. Then a deliberately
    bad window: July, whatever month arrived (summer air times for a spring batch)."""
    if valid == 2: return {"train_from": 5, "train_month": 1, "valid_month": 2}
    return {"train_from": 7, "train_month": 7, "valid_month": 8}

def test_a_failed_training_run_is_survived_and_a_recipe_from_a_bad_window_is_never_promoted(project, monkeypatch):
    work = project/"sim"
    copy_template(work, "flights")
    monkeypatch.chdir(work)
    loop = RetrainLoop(work/"pipeline.yaml", RetrainPolicy(trigger="always", windows=[1]), params={"sample": SAMPLE}, jobs=2)
    loop.spec.grid = {"train": {"model": MODELS}}
    first = loop.start(2)
    monkeypatch.setenv("_MLFLOW_TELEMETRY_SESSION_ID", "0ff1ine")   # MLflow changes it when its telemetry gives up, offline
    monkeypatch.setattr(loop.spec, "window_params", broken_then_summer)
    feb, mar, apr = records = [loop.step(month_batch(m, SAMPLE)) for m in (2, 3, 4)]
    assert feb["decision"] == "failed" and not feb["retrained"] and not feb["promoted"] and "train_from" in feb["error"]
    assert [r["champion_version"] for r in records] == [first] * 3              # kept through the failure and the refusals
    assert [r["decision"] for r in (mar, apr)] == ["refused", "refused"] and mar["challenger_version"] == apr["challenger_version"]
    for r in (mar, apr): assert r["score_challenger"] > r["score_champion"] > 0 and r["refit_version"] is None, r   # refused before any refit
    client, runs = store_runs(work, "flights-retraining")
    assert sorted(r.data.tags["decision"] for r in runs) == ["failed", "refused", "refused"]
    assert all(r.data.tags[KIND_TAG] == KIND_RETRAINING for r in runs)
    assert "train_from" in next(r for r in runs if r.data.tags["decision"] == "failed").data.tags["error"]
    from mlops_nb.registry import champion, alias_history
    events = alias_history("flights")
    assert (events.action == "retrain-failed").sum() == 1 and (events.action == "refused").sum() == 2
    assert int(champion("flights").version) == first
    again = RetrainLoop(work/"pipeline.yaml").restore()  # a cron process continues where the decisions left off
    assert (again.batches, again.last_retrain) == (3, 3)
    zygote = loop.executor().zygote   # every kernel of the loop forked warm, though MLflow changed the environment
    assert zygote.warm > 0 and not zygote.cold, zygote.cold
    loop.close()

def test_the_windows_of_a_back_test_train_at_once_and_one_that_fails_leaves_the_others_done(project, monkeypatch):
    """Windows 2 and 1 train together (train_upstream); window 2, tried first, is broken: the decision fails, yet window 1
    ran to its end and is cached (one after the other, window 1 would never have started)."""
    from mlops_nb.pipeline import plan
    work = project/"sim"
    copy_template(work, "flights")
    monkeypatch.chdir(work)
    loop = RetrainLoop(work/"pipeline.yaml", RetrainPolicy(trigger="always", windows=[2, 1]), params={"sample": SAMPLE}, jobs=2)
    loop.spec.grid = {"train": {"model": MODELS}}
    loop.start(3, length=1)
    real = loop.spec.window_params
    broken = lambda last, valid, length: {"train_from": 5, "train_month": 1, "valid_month": 2} if length == 2 else real(last, valid, length)
    monkeypatch.setattr(loop.spec, "window_params", broken)
    rec = loop.step(month_batch(4, SAMPLE))
    assert rec["decision"] == "failed" and "train_from" in rec["error"], rec
    done = plan(loop.window_pipeline(real(3, 4, 1)))
    assert done[done.step.isin(["prepare", "vectorize", "train"])].cached.all(), done   # the good window ran to its end
    loop.close()

def test_after_a_drop_the_champions_recipe_is_refreshed_though_the_old_champion_wins_the_batch(project, monkeypatch):
    """The flights' spring: a champion trained on March predicts May better than any model trained on April, yet June far
    worse than one trained on May. May's batch shows a drop against the first champion's score; the champion's recipe,
    back-tested within the tolerance of it, is refit on May and promoted (recorded as forced, with the evidence)."""
    from mlops_nb.registry import champion, alias_history
    work = project/"sim"
    copy_template(work, "flights")
    monkeypatch.chdir(work)
    loop = RetrainLoop(work/"pipeline.yaml", RetrainPolicy(trigger="monitor", windows=[1], max_age=None), jobs=2)
    loop.spec.grid = {"train": {"model": [{"family": "ridge", "alpha": 10.0}]}}   # all flights of a month: the season shows
    first = loop.start(4)                                          # trained on March, validated on April
    may = loop.step(month_batch(5))
    assert may["verdict"] == "performance_drop" and may["decision"] == "refreshed", may
    assert may["score_champion"] < may["score_challenger"] <= may["score_champion"] * 1.1   # the old champion won May, narrowly
    refit = champion("flights")
    assert int(refit.version) == may["refit_version"] != first and refit.tags["mlops_nb.trained_until"] == "5"
    assert refit.tags["mlops_nb.recipe"] == loop.recipe(may["challenger_version"], 1)    # the champion's own recipe
    event = alias_history("flights").iloc[-1]
    assert event.action == "forced" and "refresh after a drop of rmse" in event.reason
    loop.close()
