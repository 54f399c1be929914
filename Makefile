# The two commands of the README:  `make demo`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MPLBACKEND := Agg

.PHONY: demo test install dev browser sync nbtest pytest readme bench clean

demo: install  ## install into .venv, then run the main job offline: the demo pipeline profile into runs/demo
	$(BIN)/dcd_pipeline --profile demo --out runs/demo
	@echo "Outputs in runs/demo: detections 06_inference/detections.{geojson,csv}, masks 06_inference/{mask,prob}.tif,"
	@echo "report 07_evaluation/report.html, executed notebooks notebooks/*.ipynb, manifest manifest.json"

test: dev browser sync nbtest pytest  ## install dev extras, check sync, run notebook tests and pytest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python settings.ini setup.py
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

browser:  ## headless Chromium (Debian package) for the screenshot tests
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "Chromium is missing: install it (Debian/Ubuntu: sudo apt-get install chromium) and rerun."; exit 1; }; }

sync: dev  ## nbdev_export, nbdev_clean and the README must leave no git diff
	bash tools/check_sync.sh $(BIN)

nbtest: dev
	$(BIN)/nbdev_test --n_workers 2

pytest: dev  ## two workers (pytest-xdist), one per core; a test file stays on one worker, so its module fixtures are built once
	$(BIN)/python -m pytest tests/ -q -n 2 --dist loadfile --durations=15

readme: dev
	$(BIN)/python tools/make_readme.py

bench: dev  ## benchmarks: each writes bench/results/<name>.json and prints one summary line
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf _docs _proc build dist *.egg-info
