# Every target builds what it needs first: `make demo` and `make test` work on a fresh machine with
# Python 3.11 and pip. Stage targets run their job on the demo data; override with CONFIG=... RAY_ADDRESS=...
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENV_CACHE ?= $(HOME)/.cache/joyai-envs
# Each environment lives in the cache under a key hashed from the files that define it (see scripts/env_common.sh).
env_key = $(shell cat $(1) scripts/env_common.sh | sha256sum | cut -c1-12)
ENV_DIR := $(ENV_CACHE)/main-$(call env_key,constraints/dev.txt constraints/requirements-main.txt scripts/setup_env.sh)
RENDER_ENV_DIR := $(ENV_CACHE)/render-$(call env_key,constraints/requirements-render.txt scripts/setup_render_env.sh)
PY := $(ENV_DIR)/bin/python
export JOYAI_RENDER_PYTHON ?= $(RENDER_ENV_DIR)/bin/python
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE := 1
export JOYAI_TINY_MODELS ?= $(CURDIR)/.cache/tiny-models
OUT ?= out
RUN_JOB = $(PY) -m pipelines run $(1) $(if $(RAY_ADDRESS),--address $(RAY_ADDRESS))
PYTEST_ARGS ?=

.PHONY: help setup system-deps render-env demo test bench tiny-models \
        curate caption rebalance spatial-qa render-multiview render-edit train-mllm train-mmdit

help:
	@echo "make demo | test | bench | setup | tiny-models"
	@echo "stages:  curate caption rebalance spatial-qa render-multiview render-edit train-mllm train-mmdit"
	@echo "         (CONFIG=path/to/job.yaml RAY_ADDRESS=http://head:8265 to override)"

system-deps:
	@scripts/system_deps.sh

$(ENV_DIR)/.complete: constraints/dev.txt constraints/requirements-main.txt scripts/setup_env.sh scripts/env_common.sh
	@scripts/setup_env.sh $(ENV_DIR)

$(RENDER_ENV_DIR)/.complete: constraints/requirements-render.txt scripts/setup_render_env.sh scripts/env_common.sh
	@scripts/setup_render_env.sh $(RENDER_ENV_DIR)

# The links are conveniences for people; make itself always uses the keyed paths.
.venv: $(ENV_DIR)/.complete
	@ln -sfn $(ENV_DIR) .venv

.venv-render: $(RENDER_ENV_DIR)/.complete
	@ln -sfn $(RENDER_ENV_DIR) .venv-render

render-env: .venv-render

setup: system-deps .venv .venv-render

tiny-models: setup
	@$(PY) -m trainer.tiny_models --out $(JOYAI_TINY_MODELS)

demo: setup
	@$(PY) -m pipelines.demo --out $(OUT)/demo

test: setup tiny-models
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

bench: setup
	@$(PY) -m benchmarks.run $(BENCH)

# ---- one target per data stage -------------------------------------------------------------------------
define stage_target
$(1): setup
	@if [ -n "$(CONFIG)" ] || [ -f $(2) ]; then $(call RUN_JOB,$(or $(CONFIG),$(2))); \
	 else echo "make $(1): the $(1) stage is not built yet ($(2) does not exist)"; exit 2; fi
endef
$(eval $(call stage_target,curate,pipelines/jobs/curate_images.yaml))
$(eval $(call stage_target,caption,pipelines/jobs/caption.yaml))
$(eval $(call stage_target,rebalance,pipelines/jobs/rebalance.yaml))
$(eval $(call stage_target,spatial-qa,pipelines/jobs/spatial_qa.yaml))
$(eval $(call stage_target,render-multiview,pipelines/jobs/multiview.yaml))
$(eval $(call stage_target,render-edit,pipelines/jobs/spatial_edit.yaml))

define train_target
$(1): setup
	@if [ -f trainer/__main__.py ]; then $(PY) -m trainer train --config $(or $(CONFIG),$(2)); \
	 else echo "make $(1): the trainer is not built yet (trainer/__main__.py does not exist)"; exit 2; fi
endef
$(eval $(call train_target,train-mllm,trainer/configs/mllm_sft_tiny.yaml))
$(eval $(call train_target,train-mmdit,trainer/configs/mmdit_t2i_tiny.yaml))
