# prunequant: `make help` lists the targets. Every target sets itself up on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# Stages in dvc.yaml call `python`: put the project's environment first for them and for dvc (not inside
# the Docker image, where the dependencies are installed and a mounted host .venv would not run).
ifneq ($(PRUNEQUANT_SETUP),skip)
export PATH := $(BIN):$(PATH)
endif
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup check quick repro finetune compare-strategies compare-widths bench-cpu bench-cpu-shapes bench-gpu bench-gpu-shapes test test-fast lint dvc-files metrics plots \
	docker-build docker-quick docker-repro docker-bench-gpu docker-test exp push pull

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-19s %s\n", $$1, $$2}'

# Inside the Docker image the dependencies are installed already (PRUNEQUANT_SETUP=skip).
ifeq ($(PRUNEQUANT_SETUP),skip)
setup: ;
else
setup: $(STAMP) ## Create .venv with the pinned dependencies (CPU torch)
endif

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip check
	touch $@

check: setup ## Validate every section of params.yaml (python -m prunequant.check); repro runs it first
	python -m prunequant.check

# A clone of the committed code in quick/ (its own DVC cache), with profiles/quick.yaml applied as a DVC experiment
# there: nothing in this workspace changes. `rm -rf quick` removes it.
quick: setup ## A first run in a few minutes: the whole pipeline on a subset, in its own clone -> quick/reports/report.md
	rm -rf quick && git clone -q . quick
	args="$$(python -m prunequant.profiles quick)" && cd quick && eval dvc exp run $$args
	@echo "quick: done; open quick/reports/report.md (quick/metrics/results.csv has every row)"

# NPROC=<n>: train with n processes (`accelerate launch`, one per GPU; gloo on CPU) by setting
# finetune.processes / refinetune.processes for this run (dvc exp run -S ..., kept in params.yaml).
repro: setup check ## Run the pipeline on params.yaml (dvc repro); NPROC=4 trains with 4 processes
	$(if $(NPROC),dvc exp run -S finetune.processes=$(NPROC) -S refinetune.processes=$(NPROC),dvc repro)

finetune: setup check ## Fine-tune the baseline only (dvc repro finetune); NPROC=4 trains with 4 processes
	$(if $(NPROC),dvc exp run finetune -S finetune.processes=$(NPROC),dvc repro finetune)

compare-strategies: setup check ## Every pruning strategy, with and without distillation -> metrics/strategies.csv
	dvc repro strategies/dvc.yaml

compare-widths: setup check ## Depth vs width (compare.cuts) at equal CPU latency -> metrics/widths.csv, reports/widths.md
	dvc repro widths/dvc.yaml

bench-cpu: setup ## Time every CPU variant (builds what is missing) -> metrics/bench/cpu.csv, reports/bench-cpu.md
	dvc repro bench/dvc.yaml:bench-cpu

bench-gpu: setup ## Time every GPU variant -> metrics/bench/gpu.csv (a message and no rows without CUDA)
	@if python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then \
		dvc repro bench/dvc.yaml:bench-gpu; \
	else echo "bench-gpu: no CUDA device on this machine: nothing timed, metrics/bench/gpu.csv left as it was"; fi

bench-cpu-shapes: setup ## bert-base 12 vs 8 (and 8 at half width), bert-large 24 vs 16 (and 16-w50) layers, random weights, FP32 eager and INT8 runtimes, on the CPU -> metrics/bench/cpu-shapes.csv
	dvc repro prepare
	python stages/bench.py --device cpu --weights random --name cpu-shapes --summary reports/bench-cpu-shapes.md \
		--schemes onnx-int8-dynamic,openvino-int8-static --points 1x16,1x128

bench-gpu-shapes: setup ## bert-base/large shapes (bench.shapes) with random weights on the GPU -> metrics/bench/gpu-shapes.csv
	dvc repro prepare
	python stages/bench.py --device cuda --weights random --name gpu-shapes --summary reports/bench-gpu-shapes.md

# Two worker processes (pytest-xdist; loadgroup keeps a module with a costly fixture on one worker), in random order
# (pytest-randomly: it prints the seed; `-p randomly --randomly-seed=N` repeats an order; `-p no:randomly` keeps the file order).
test: setup ## Run the whole test suite (two workers, random order)
	python -m pytest -n 2 --dist loadgroup

test-fast: setup ## The inner loop: every test but the e2e and slow ones (-m "not e2e and not slow")
	python -m pytest -n 2 --dist loadgroup -m "not e2e and not slow"

lint: setup ## Lint the code (ruff, configured in pyproject.toml); the test suite runs it too
	ruff check src stages bench tests

dvc-files: setup ## Write dvc.yaml and strategies/, bench/, machine/dvc.yaml from src/prunequant/dvcfiles.py
	python -m prunequant.dvcfiles

metrics: setup ## Show the tracked metrics (dvc metrics show)
	dvc metrics show

plots: setup ## Render the DVC plots to dvc_plots/index.html (Vega loads from a CDN)
	dvc plots show

# ---- profiles and sharing ------------------------------------------------------------------------------
PROFILE ?= bert-base-sst2
REMOTE ?=

exp: setup check ## Run a params preset as a DVC experiment: make exp PROFILE=bert-base-sst2 (profiles/*.yaml)
	args="$$(python -m prunequant.profiles $(PROFILE))" && eval dvc exp run $$args

push: setup ## Push data, models and artifacts to the DVC remote (REMOTE=<name>, default: the default remote)
	dvc push $(if $(REMOTE),-r $(REMOTE))

pull: setup ## Pull them from the DVC remote; a `dvc repro` afterwards reruns nothing
	dvc pull $(if $(REMOTE),-r $(REMOTE))

# ---- containers (docker, or DOCKER=podman) -------------------------------------------------------------
DOCKER ?= docker
IMAGE ?= prunequant:latest
BASE ?=
BUILD_ARGS ?=
GPUS ?= --gpus all
RUN_ARGS ?=
# The container never runs as root unless asked (AS_ROOT=1): it runs as your uid, or, when you are root on the
# host, as the image's own user (uid 1000), who then needs write access to this checkout.
AS_ROOT ?=
CONTAINER_USER = $(if $(AS_ROOT),0:0,$(if $(filter 0,$(shell id -u)),1000:1000,$(shell id -u):$(shell id -g)))
RUN_IN_IMAGE = $(DOCKER) run --rm $(GPUS) $(RUN_ARGS) -v "$(CURDIR)":/workspace -u $(CONTAINER_USER) $(IMAGE)

docker-build: ## Build the CUDA image (BASE=<local image> to build without a registry)
	$(DOCKER) build $(if $(BASE),--build-arg BASE=$(BASE)) $(BUILD_ARGS) -t $(IMAGE) .

docker-quick: ## `make quick` in the image: the five-minute first run (GPUS= on a machine without GPUs)
	$(RUN_IN_IMAGE) make quick

docker-repro: ## `dvc repro` in the image, this repository mounted (GPUS= on a machine without GPUs)
	$(RUN_IN_IMAGE) dvc repro

docker-bench-gpu: ## `make bench-gpu` in the image, with every GPU
	$(RUN_IN_IMAGE) make bench-gpu

docker-test: ## The test suite in the image
	$(RUN_IN_IMAGE) make test
