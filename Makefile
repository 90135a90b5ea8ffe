# The two commands: `make demo` runs the main job, `make test` passes the tests. Each bootstraps .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PYTHONUNBUFFERED := 1
export PYTHONDONTWRITEBYTECODE :=  # byte-compile the project's modules once: where the machine sets it, every kernel recompiled them (~0.1 s each)
export PATH := $(abspath $(BIN)):$(PATH)
# a digest of the notebooks and the library, to check that nbdev_clean + nbdev_export change nothing
SYNC_DIGEST = find nbs mlops_nb -type f -not -path '*/__pycache__/*' -not -path '*/.ipynb_checkpoints/*' | sort | xargs sha1sum | sha1sum

.PHONY: demo test test-browser test-server docs outputs lab bench clean-venv

$(BIN)/mlops-nb: setup.py settings.ini
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv   # uv installs the rest in ~15 s where pip took ~70 s (the same versions)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $@

demo: $(BIN)/mlops-nb  ## the flights demo on an embedded sqlite MLflow store in ./demo-flights
	$(BIN)/mlops-nb demo --workdir demo-flights

test: $(BIN)/mlops-nb  ## notebooks and library in sync, notebook tests (executed once, rendered into the manual), then pytest
	@before=$$($(SYNC_DIGEST)); $(BIN)/nbdev_clean && $(BIN)/nbdev_export && after=$$($(SYNC_DIGEST)); \
	  test "$$before" = "$$after" || { git status --short -- nbs mlops_nb; \
	  echo "nbdev_clean/nbdev_export changed nbs/ or mlops_nb/: notebooks and library were out of sync; commit the result"; exit 1; }
	$(BIN)/python tools/build_docs.py --jobs 2
	$(BIN)/python -m pytest tests/ --ignore=tests/test_maturity_browser.py -n 2 --dist load --durations=15

test-browser: $(BIN)/mlops-nb  ## the real-browser widget test: installs chromium (apt) if missing, then JupyterLab + Playwright
	.ci/install-browser
	$(BIN)/python -m pytest tests/test_maturity_browser.py

test-server: $(BIN)/mlops-nb  ## the tracking/registry/pipeline suites + test_tracking_server.py on a real mlflow server over a throwaway PostgreSQL
	@trap '.ci/postgres stop' EXIT; url=$$(.ci/postgres start) && \
	  MLOPS_NB_TEST_POSTGRES=$$url $(BIN)/python -m pytest tests/test_tracking_papermill.py tests/test_registry.py \
	    tests/test_pipeline.py tests/test_tracking_server.py -n 2 --dist load --durations=12

docs: $(BIN)/mlops-nb  ## the manual: every notebook executed and rendered to _docs/*.html (offline: execnb + nbconvert), index _docs/manual.html
	$(BIN)/python tools/build_docs.py

outputs: $(BIN)/mlops-nb  ## the manual, and each notebook's light outputs (tables, plots, printouts) stored in nbs/ for readers
	$(BIN)/python tools/build_docs.py --keep-outputs
	$(BIN)/nbdev_clean

lab: $(BIN)/mlops-nb  ## JupyterLab on the project with this venv's kernel
	$(BIN)/jupyter lab --ip 127.0.0.1

bench: $(BIN)/mlops-nb  ## the benchmarks, each printing ratios against its anchor
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
