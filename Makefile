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
# make screenshots: trame-slicer pins slicer-core 5.11 (the main venv has 5.13), so it gets a venv of its own (~1.2 GB)
TRAME_VENV ?= .venv-trame
TRAME_PY := $(TRAME_VENV)/bin/python
TRAME_PIN ?= trame-slicer[standalone]==2.0.0
SCREENSHOTS_OUT ?= out/screenshots
SCREENSHOTS_DIR ?= docs/images

.PHONY: help demo test bench lint experiment default-model screenshots clean-venv

help:
	@echo "make demo   - set up .venv, fetch the sample CT, segment it with the default model into $(DEMO_OUT)/"
	@echo "make test   - set up .venv with test dependencies, fetch test data, run the whole test suite"
	@echo "make bench  - what a user waits for, MORSE against its backbone and its peers (docs/results/bench.md);"
	@echo "              BENCH_ARGS='--device cuda --bf16' on a GPU"
	@echo "make lint   - ruff"
	@echo "make experiment     - the 2D ablation on the registry CT (docs/results/ablation.md)"
	@echo "make default-model  - train and pack the shipped default model"
	@echo "make screenshots    - offscreen pictures of the default model's result as the module displays it"
	@echo "                      ($(SCREENSHOTS_DIR)/slicer-*.png; needs its own venv $(TRAME_VENV), ~1.2 GB; not in CI)"

$(VENV)/.stamp-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$(PIP_PIN)"
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -e .
	touch $@

$(TRAME_VENV)/.stamp-trame:
	test -x $(TRAME_PY) || $(PYTHON) -m venv $(TRAME_VENV)
	$(TRAME_PY) -m pip install -q "$(PIP_PIN)"
	$(TRAME_PY) -m pip install -q "$(TRAME_PIN)"
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
	$(PY) -m morse.experiments.uncertainty --data $(BTCV_DATA) --install

# the module's run on the sample CT (main venv, through its worker process), then its output nodes made by the
# module's own import in a trame-slicer scene and rendered offscreen (EGL; no display, server or GPU needed)
screenshots: $(VENV)/.stamp-base $(TRAME_VENV)/.stamp-trame
	$(MORSE) fetch-data
	PYTHONPATH=MORSESegmentation $(PY) tools/render_screenshots.py segment $(SCREENSHOTS_OUT) --case $(DEMO_CASE)
	PYTHONPATH=MORSESegmentation VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow \
	  $(TRAME_PY) tools/render_screenshots.py render $(SCREENSHOTS_OUT) $(SCREENSHOTS_DIR)

clean-venv:
	rm -rf $(VENV) $(TRAME_VENV)
