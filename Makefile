# MORSE: one command to set up and run the demo, one to set up and run the tests.
#   make demo   -> .venv, dependencies, sample data, default model segments the sample CT into out/demo/
#   make test   -> .venv, test dependencies (slicer-core included), test data, the whole pytest suite
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MORSE := $(VENV)/bin/morse
# CPU wheel of torch that the machines carry; installed before anything can pull a CUDA build.
TORCH_PIN ?= torch==2.13.0
# pip pinned too: a new pip release must not change the set-up or the data fetch under us (this one is tested)
PIP_PIN ?= pip==26.3
DEMO_CASE ?= abdomen-ct-dicom
DEMO_OUT ?= out/demo
# the 30 BTCV abdomen CTs in the nnU-Net layout (not shipped; see docs/results/synapse.md)
BTCV_DATA ?= ../shared/data/btcv-synapse8
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help demo test bench lint experiment default-model clean-venv

help:
	@echo "make demo   - set up .venv, fetch the sample CT, segment it with the default model into $(DEMO_OUT)/"
	@echo "make test   - set up .venv with test dependencies, fetch test data, run the whole test suite"
	@echo "make bench  - what a user waits for, MORSE against its backbone and its peers (docs/results/bench.md);"
	@echo "              BENCH_ARGS='--device cuda --bf16' on a GPU"
	@echo "make lint   - ruff"
	@echo "make experiment     - the 2D ablation on the registry CT (docs/results/ablation.md)"
	@echo "make default-model  - train and pack the shipped default model"

$(VENV)/.stamp-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$(PIP_PIN)"
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -e .
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-base
	$(PIP) install -q -e ".[test,dev]"
	@if $(PIP) show slicer >/dev/null 2>&1; then \
	  echo "The PyPI package 'slicer' (unrelated to 3D Slicer) is installed and hides slicer-core: pip uninstall slicer"; exit 1; fi
	touch $@

demo: $(VENV)/.stamp-base
	$(MORSE) fetch-data
	$(MORSE) segment "$$($(MORSE) fetch-data --path $(DEMO_CASE))" -o $(DEMO_OUT) --model default --overwrite

test: $(VENV)/.stamp-test
	$(MORSE) fetch-data
	$(PY) -m pytest $(PYTEST_ARGS)

# test dependencies too: the Slicer rows run the module logic on slicer-core
bench: $(VENV)/.stamp-test
	$(MORSE) fetch-data
	$(MORSE) bench $(BENCH_ARGS)

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

experiment: $(VENV)/.stamp-base
	$(MORSE) fetch-data
	$(PY) -m morse.experiments.ablation

default-model: $(VENV)/.stamp-base
	$(MORSE) fetch-data
	$(PY) -m morse.experiments.btcv_model --data $(BTCV_DATA)

clean-venv:
	rm -rf $(VENV)
