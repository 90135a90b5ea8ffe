"""New projects as users make them: `mlops-nb new --template classification|blank` pass their own tests as generated,
and the classification project retrains with the same library code as the flights demo."""
import json
import pandas as pd, pytest
from conftest import BIN, run, store_runs

def mlops(*args, cwd, check=True):
    return run(BIN/"mlops-nb", *args, cwd=cwd, check=check)

@pytest.mark.parametrize("template", ["classification", "blank"])
def test_a_new_project_passes_its_own_tests_as_generated(tmp_path, project, template):
    mlops("new", tmp_path/template, "--template", template, cwd=tmp_path)
    tested = run(BIN/"python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=tmp_path/template)
    assert "2 passed" in tested.stdout, tested.stdout[-3000:]

def test_the_classification_project_runs_reaches_level_2_and_retrains_with_the_generic_loop(tmp_path, project):
    proj = tmp_path/"churn"
    mlops("new", proj, "--template", "classification", cwd=tmp_path)
    mlops("run", "--jobs", "2", cwd=proj)
    client, runs = store_runs(proj, "classification")
    train = [r for r in runs if r.data.tags.get("mlops_nb.step") == "train"]
    best = max(r.data.metrics["balanced_accuracy"] for r in train)            # higher is better: the champion is the highest
    champion = client.get_model_version_by_alias("classification", "champion")
    assert float(champion.tags["metric.balanced_accuracy"]) == best and champion.tags["mlops_nb.goal.balanced_accuracy"] == "max"
    found = json.loads(mlops("best", "classification", "-m", "balanced_accuracy", "--json", cwd=proj).stdout)
    assert found["value"] == best and found["mode"] == "max"
    level = json.loads(mlops("maturity", "--json", cwd=proj).stdout)
    assert level["level"] >= 2, level                                           # git, CI and a test came with `new`

    batches = pd.read_parquet(proj/"data"/"batches.parquet")
    batches[batches.period == 4].to_parquet(proj/"period4.parquet")
    turn = json.loads(mlops("retrain", "--batch", proj/"period4.parquet", "--trigger", "always", "--window", "1", "--json", cwd=proj).stdout)
    assert (turn["period"], turn["champion_version"], turn["retrained"]) == (4, int(champion.version), True)
    assert turn["window"] == {"train_from": 3, "train_to": 3, "valid_period": 4} and len(turn["candidates"]) == 1
    now = client.get_model_version_by_alias("classification", "champion")
    if turn["decision"] == "promoted":                                          # the refit of the winning recipe serves now,
        assert int(now.version) == turn["refit_version"]                       # linked to the back-test that let it in
        assert now.tags["mlops_nb.refit_of"] == str(turn["challenger_version"]) and turn["score_challenger"] > turn["score_champion"]
    else:
        assert turn["decision"] == "refused" and now.version == champion.version and turn["score_challenger"] <= turn["score_champion"]
    assert client.get_model_version("classification", turn["challenger_version"]).tags["mlops_nb.trained_until"] == "3"
    # staleness: a schedule that does not fire this batch, but the champion's data may be at most 0 periods old
    batches[batches.period == 5].to_parquet(proj/"period5.parquet")
    stale = json.loads(mlops("retrain", "--batch", proj/"period5.parquet", "--trigger", "schedule", "--every", "100",
                             "--max-age", "0", "--window", "1", "--json", cwd=proj).stdout)
    if turn["decision"] == "promoted":                                          # the refit was trained up to period 4
        assert stale["retrained"] and stale["why"] == "stale: the champion's newest data is 1 period(s) old (max_age 0)", stale
    else: assert not stale["retrained"] and stale["decision"] == "kept"        # the pipeline's champion has no age: not stale
    _, decisions = store_runs(proj, "classification-retraining")
    assert sorted(r.data.tags["decision"] for r in decisions) == sorted([turn["decision"], stale["decision"]])
