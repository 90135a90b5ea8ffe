"`mlops-nb demo` as a user runs it: the flights pipeline and the year replayed through the retraining loop, twice (the second from the cache)."
import json, re
from conftest import BIN, run, store_runs
from mlops_nb.config import KIND_TAG, KIND_RETRAINING
from mlops_nb.scaffold import copy_template

MONTH = re.compile(r"month +(\d+): champion v(\d+) RMSE ([\d.]+) \(frozen model ([\d.]+), monthly refit ([\d.]+)\), "
                   r"monitor ([\w, ]+?) -> (\w+)(?: v(\d+)(?: -> refit v(\d+))?)?")
STEPS = ("prepare", "vectorize", "train", "register", "monitor", "serve")

def replay_months(stdout:str)->list[tuple]:
    "The demo's replay, a line per month: (month, champion, served, frozen, baseline, verdict, decision, challenger, refit)."
    return [m.groups() for m in MONTH.finditer(stdout)]

def executed_notebooks(demo, after:set)->set:
    return {nb.name for folder in demo.glob("runs/*/*") if folder not in after for nb in folder.glob("*.ipynb")}

def test_demo_runs_the_pipeline_and_the_retraining_replay_then_both_again_from_the_cache(tmp_path, project):
    demo = tmp_path/"demo-flights"
    copy_template(demo)                   # the user's own edits, kept by the demo: two models in the grid, not six, and
    grid = demo/"pipeline.yaml"           # back-tests of the last month only, with the forest alone
    text = grid.read_text().replace("        - {family: ridge, alpha: 0.1}\n        - {family: ridge, alpha: 10.0}\n"
                                    "        - {family: lasso, alpha: 0.01}\n        - {family: lasso, alpha: 0.1}\n", "")
    text = text.replace("  windows: [1, 2]", "  windows: [1]").replace("        - {family: ridge, alpha: 10.0}                       #", "        #")
    assert text.count("family:") == 3 and "windows: [1]" in text, text
    grid.write_text(text)
    first = run(BIN/"mlops-nb", "demo", "--workdir", demo, "--sample", "0.1", cwd=tmp_path)
    assert "champion: flights v1" in first.stdout and "mlflow ui --backend-store-uri" in first.stdout
    rmse = float(re.search(r"champion: flights v1, validation RMSE ([\d.]+) min", first.stdout)[1])
    assert 8 < rmse < 15                                   # January -> February air time, in minutes
    _, runs = store_runs(demo, "flights")
    train = [r for r in runs if r.data.tags.get("mlops_nb.step") == "train" and r.data.tags["mlops_nb.pipeline"] == "flights"]
    assert len(train) == 2 and all("rmse" in r.data.metrics for r in train)
    assert round(min(r.data.metrics["rmse"] for r in train), 2) == rmse   # the champion is the best grid point

    _, monitored = store_runs(demo, "flights-monitoring")
    rmse_by_month = {int(r.info.run_name.split()[-1]): r.data.metrics["rmse"] for r in monitored}
    assert sorted(rmse_by_month) == list(range(3, 13))
    assert max(rmse_by_month[m] for m in (6, 7, 8)) > 1.4 * rmse       # the frozen model degrades through the summer
    assert (demo/"reports"/"monitoring.html").is_file()
    served = json.loads((demo/"reports"/"serving.json").read_text())    # the champion answered over HTTP, exactly
    assert served["rows"] == 2000 and served["max_abs_diff"] == 0 and served["version"]["version"] == 1
    assert list((demo/"predictions").glob("flights-*.parquet"))          # and logged its predictions

    months = replay_months(first.stdout)                                 # the retraining loop over the rest of the year
    assert [int(m[0]) for m in months] == list(range(2, 13))
    for (_, champ, *_, decision, challenger, refit), after in zip(months, months[1:]):   # a month is served by the champion
        assert after[1] == ((refit or challenger) if decision in ("promoted", "refreshed") else champ)   # chosen the month before: the refit
    retrains = sum(m[6] != "kept" for m in months)
    assert 0 < retrains < 11 and all(m[6] == "kept" for m in months if m[5] == "ok")   # it fires on drift, a drop or staleness only
    assert all(m[8] for m in months if m[6] in ("promoted", "refreshed"))              # what it promotes is a refit
    served_rmse, frozen_rmse, baseline_rmse = map(float, re.search(
        r"mean RMSE ([\d.]+) min served by the loop vs ([\d.]+) min for the frozen first model and ([\d.]+) min", first.stdout).groups())
    assert served_rmse < frozen_rmse
    assert (demo/"reports"/"retraining.png").stat().st_size > 10_000
    _, decisions = store_runs(demo, "flights-replay-retraining")
    assert len(decisions) == 11 and all(r.data.tags[KIND_TAG] == KIND_RETRAINING for r in decisions)

    folders = set(demo.glob("runs/*/*"))
    second = run(BIN/"mlops-nb", "demo", "--workdir", demo, "--sample", "0.1", cwd=tmp_path)
    steps = {line.split()[0]: line.split()[1] for line in second.stdout.splitlines() if line.split()[:1] and line.split()[0] in STEPS}
    assert steps == dict.fromkeys(STEPS, "cached")
    assert replay_months(second.stdout) == months                        # the same decisions, with the same numbers
    assert executed_notebooks(demo, folders) <= {"register.ipynb"}       # every training window came from the cache

    found = json.loads(run(BIN/"mlops-nb", "best", "flights", "--metric", "rmse", "--json", cwd=demo).stdout)
    _, runs = store_runs(demo, "flights")                                # the pipeline's grid and the replay's windows
    best = min(r.data.metrics["rmse"] for r in runs if "rmse" in r.data.metrics)
    assert found["value"] == best and found["mode"] == "min"
    assert "champion" in run(BIN/"mlops-nb", "models", "flights", cwd=demo).stdout
    level = json.loads(run(BIN/"mlops-nb", "maturity", demo, "--json", cwd=tmp_path).stdout)    # the demo folder on its own
    met = {i["id"] for i in level["items"] if i["met"]}
    assert (demo/".git").is_dir() and level["level"] >= 2 and {"ci", "tests", "tracking", "reproducible", "pipeline", "registry", "champion", "api"} <= met

    # one turn of the loop from cron, for the demo's own model: its champion came from the pipeline (no train-data tag),
    # so the monitor's reference is the pipeline's train product
    from mlops_nb.flights import month_batch
    month_batch(3, 0.1).to_parquet(demo/"march.parquet")
    turn = json.loads(run(BIN/"mlops-nb", "retrain", "--batch", demo/"march.parquet", "--trigger", "always", "--window", "1", "--json", cwd=demo).stdout)
    assert (turn["period"], turn["champion_version"], turn["retrained"]) == (3, 1, True)
    assert turn["decision"] in ("promoted", "refused") and turn["challenger_version"] > 1 and turn["window"]["valid_month"] == 3
    assert (turn["decision"] == "promoted") == (turn["score_challenger"] < turn["score_champion"])
    _, decided = store_runs(demo, "flights-retraining")
    assert [r.data.tags["decision"] for r in decided] == [turn["decision"]]
