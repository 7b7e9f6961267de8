# Every target builds what it needs first: `make demo` and `make test` work on a fresh machine with
# Python 3.11 and pip. Stage targets run their job on the demo data; override with CONFIG=... RAY_ADDRESS=...
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENV_CACHE ?= $(HOME)/.cache/joyai-envs
# Each environment lives in the cache under a key hashed from the files that define it (see scripts/env_common.sh).
env_key = $(shell cat $(1) scripts/env_common.sh | sha256sum | cut -c1-12)
ENV_DIR := $(ENV_CACHE)/main-$(call env_key,constraints/dev.txt constraints/requirements-main.txt scripts/setup_env.sh)
RENDER_ENV_DIR := $(ENV_CACHE)/render-$(call env_key,constraints/requirements-render.txt scripts/setup_render_env.sh)
VLLM_ENV_DIR := $(ENV_CACHE)/vllm-$(call env_key,constraints/requirements-vllm.txt scripts/setup_vllm_env.sh)
LABELSTUDIO_ENV_DIR := $(ENV_CACHE)/labelstudio-$(call env_key,constraints/requirements-labelstudio.txt scripts/setup_labelstudio_env.sh)
REWARD_PARITY_ENV_DIR := $(ENV_CACHE)/reward-parity-$(call env_key,constraints/requirements-reward-parity.txt scripts/setup_reward_parity_env.sh)
# The peer systems `make bench-peers` compares with, one environment each (scripts/setup_peer_env.sh).
PEERS := data-juicer trl nemo-curator
peer_env_dir = $(ENV_CACHE)/peer-$(1)-$(call env_key,constraints/requirements-peer-$(1).txt scripts/setup_peer_env.sh)
PY := $(ENV_DIR)/bin/python
export JOYAI_RENDER_PYTHON ?= $(RENDER_ENV_DIR)/bin/python
# VLLM_TESTS=0 skips building the vLLM environment (3.5 GB) and the tests that run the vLLM engine on CPU.
VLLM_TESTS ?= 1
# LABELSTUDIO_TESTS=0 skips building the Label Studio environment and the test against its server.
LABELSTUDIO_TESTS ?= 1
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE := 1
export JOYAI_TINY_MODELS ?= $(CURDIR)/.cache/tiny-models
RUN_JOB = $(PY) -m pipelines run $(1) $(if $(RAY_ADDRESS),--address $(RAY_ADDRESS))
PYTEST_ARGS ?=

.PHONY: help setup system-deps render-env vllm-env labelstudio-env reward-parity-env demo test test-reward-parity \
        bench bench-peers tiny-models \
        curate caption rebalance rewrite spatial-qa lift-video video-pairs render-multiview render-edit edit-data text-render text-render-prompts train-mllm train-mmdit report \
        novel-views novel-views-models train-grpo train-nft

help:
	@echo "make demo | test | test-reward-parity | bench | bench-peers | setup | tiny-models | report"
	@echo "stages:  curate caption rebalance rewrite spatial-qa lift-video video-pairs render-multiview render-edit edit-data text-render text-render-prompts train-mllm train-mmdit novel-views novel-views-models train-grpo train-nft"
	@echo "         (CONFIG=path/to/job.yaml RAY_ADDRESS=http://head:8265 to override)"

system-deps:
	@scripts/system_deps.sh

$(ENV_DIR)/.complete: constraints/dev.txt constraints/requirements-main.txt scripts/setup_env.sh scripts/env_common.sh
	@scripts/setup_env.sh $(ENV_DIR)

$(RENDER_ENV_DIR)/.complete: constraints/requirements-render.txt scripts/setup_render_env.sh scripts/env_common.sh
	@scripts/setup_render_env.sh $(RENDER_ENV_DIR)

$(VLLM_ENV_DIR)/.complete: constraints/requirements-vllm.txt scripts/setup_vllm_env.sh scripts/env_common.sh
	@scripts/setup_vllm_env.sh $(VLLM_ENV_DIR)

$(LABELSTUDIO_ENV_DIR)/.complete: constraints/requirements-labelstudio.txt scripts/setup_labelstudio_env.sh scripts/env_common.sh
	@scripts/setup_labelstudio_env.sh $(LABELSTUDIO_ENV_DIR)

$(REWARD_PARITY_ENV_DIR)/.complete: constraints/requirements-reward-parity.txt scripts/setup_reward_parity_env.sh scripts/env_common.sh
	@scripts/setup_reward_parity_env.sh $(REWARD_PARITY_ENV_DIR)

define peer_env_rule
$(call peer_env_dir,$(1))/.complete: constraints/requirements-peer-$(1).txt scripts/setup_peer_env.sh scripts/env_common.sh
	@scripts/setup_peer_env.sh $(1) $(call peer_env_dir,$(1))
endef
$(foreach peer,$(PEERS),$(eval $(call peer_env_rule,$(peer))))

# The links are conveniences for people; make itself always uses the keyed paths.
.venv: $(ENV_DIR)/.complete
	@ln -sfn $(ENV_DIR) .venv

.venv-render: $(RENDER_ENV_DIR)/.complete
	@ln -sfn $(RENDER_ENV_DIR) .venv-render

.venv-vllm: $(VLLM_ENV_DIR)/.complete
	@ln -sfn $(VLLM_ENV_DIR) .venv-vllm

.venv-labelstudio: $(LABELSTUDIO_ENV_DIR)/.complete
	@ln -sfn $(LABELSTUDIO_ENV_DIR) .venv-labelstudio

.venv-reward-parity: $(REWARD_PARITY_ENV_DIR)/.complete
	@ln -sfn $(REWARD_PARITY_ENV_DIR) .venv-reward-parity

render-env: .venv-render
vllm-env: .venv-vllm
labelstudio-env: .venv-labelstudio
reward-parity-env: .venv-reward-parity

setup: system-deps .venv .venv-render

tiny-models: setup
	@$(PY) -m trainer.tiny_models --out $(JOYAI_TINY_MODELS)
	@$(PY) -m data_engine.ops.niqe --fetch

demo: setup tiny-models
	@$(PY) -m pipelines.demo --out out/demo

test: setup tiny-models $(if $(filter 1,$(VLLM_TESTS)),vllm-env) $(if $(filter 1,$(LABELSTUDIO_TESTS)),labelstudio-env)
	@$(if $(filter 1,$(VLLM_TESTS)),JOYAI_VLLM_ENV=$(VLLM_ENV_DIR)) \
	  $(if $(filter 1,$(LABELSTUDIO_TESTS)),JOYAI_LABELSTUDIO_ENV=$(LABELSTUDIO_ENV_DIR)) $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

# Our preference rewards against the hpsv2, image-reward and hpsv3 packages' own classes on tiny random weights
# (tests/trainer/test_reward_parity.py, in their own environment); not in `make test`.
test-reward-parity: setup reward-parity-env
	@JOYAI_REWARD_PARITY_ENV=$(REWARD_PARITY_ENV_DIR) $(PY) -m pytest -rP tests/trainer/test_reward_parity.py $(PYTEST_ARGS)

bench: setup tiny-models
	@$(PY) -m benchmarks.run $(BENCH)

# Our stages and trainer beside Data-Juicer, NeMo Curator, TRL and pyiqa (benchmarks/peers/); not in `make test`
# or `make bench`. PEERS_BENCH=trl_sft runs one comparison.
bench-peers: setup tiny-models $(foreach peer,$(PEERS),$(call peer_env_dir,$(peer))/.complete)
	@$(PY) -m benchmarks.peers.run $(foreach peer,$(PEERS),--env $(peer)=$(call peer_env_dir,$(peer))) $(PEERS_BENCH)

# ---- one target per data stage, each on the demo data (the jobs read and write under out/) -------------
# CONFIG=path/to/job.yaml runs another job instead; RAY_ADDRESS=... runs it on a cluster.
out/demo/raw/labels.json: | setup
	@$(PY) -m data_engine.demo_corpus --out out/demo/raw

out/demo/images/_manifest.json: out/demo/raw/labels.json
	@$(call RUN_JOB,pipelines/jobs/demo.yaml)

# The image flow of report 4.1, one job after another (each reads the accepted rows of the one before):
# curation (512p preset) -> OCR-aware captions + caption filters -> embedding + tags + rebalancing -> latents.
out/demo/curated_stage2_512p/_manifest.json: out/demo/raw/labels.json
	@$(call RUN_JOB,pipelines/jobs/curate_images.yaml)

out/demo/captions/_manifest.json: out/demo/curated_stage2_512p/_manifest.json | tiny-models
	@$(call RUN_JOB,pipelines/jobs/caption.yaml)

out/demo/rebalanced/_manifest.json: out/demo/captions/_manifest.json
	@$(call RUN_JOB,pipelines/jobs/rebalance.yaml)

curate: out/demo/raw/labels.json tiny-models
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/curate_images.yaml))

caption: out/demo/curated_stage2_512p/_manifest.json tiny-models
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/caption.yaml))

# Rebalancing: one job embeds + tags the captions, then runs the global Rebalance step over all tagged rows.
rebalance: out/demo/captions/_manifest.json
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/rebalance.yaml))

rewrite: out/demo/captions/_manifest.json
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/rewrite.yaml))

spatial-qa: setup
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/spatial_qa.yaml))

# RGB-D video -> lifted objects (accepted and rejected tracks) -> spatial QA on the lifted scenes.
lift-video: setup
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/lift_video.yaml) --out out/lift_video/lifted_objects)
	@$(call RUN_JOB,pipelines/jobs/spatial_qa.yaml --set input=out/lift_video/lifted_objects --out out/lift_video/spatial_qa)

# Video -> shots -> sampled sharp frames -> pairs inside one shot -> VLM edit instructions (tiny Qwen3-VL here).
video-pairs: setup tiny-models
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/video_pairs.yaml))

render-multiview: setup
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/multiview.yaml))

render-edit: setup
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/spatial_edit.yaml))

# Editing data (report 5.1): every edit source under out/demo as one triplet format -> curation -> instruction
# refinement -> balancing (edit_data.yaml), then the latents the MMDiT editing configs train on. The text-edit
# pairs and video pairs join when out/demo/text_render/edits and out/demo/video_pairs exist.
out/demo/render/spatial_edit/_manifest.json: | setup
	@$(call RUN_JOB,pipelines/jobs/spatial_edit.yaml --out out/demo/render/spatial_edit)

out/demo/video_pairs/_manifest.json: | setup tiny-models
	@$(call RUN_JOB,pipelines/jobs/video_pairs.yaml --out out/demo/video_pairs)

edit-data: out/demo/render/spatial_edit/_manifest.json out/demo/video_pairs/_manifest.json tiny-models
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/edit_data.yaml))
	@$(if $(CONFIG),,$(call RUN_JOB,pipelines/jobs/cache_edit_latents.yaml))

# Text rendering in Chromium: captioned text images (OCR-verified), then text-edit pairs.
text-render: setup
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/text_render.yaml))
	@$(if $(CONFIG),,$(call RUN_JOB,pipelines/jobs/text_edit.yaml))

# The same rendering with blueprints a VLM writes from the demo's captions.
text-render-prompts: out/demo/captions/_manifest.json | tiny-models
	@$(call RUN_JOB,$(or $(CONFIG),pipelines/jobs/text_render_prompts.yaml))

# Thinking with Novel Views on hidden-object procedural scenes, Blender as the editor (pipelines/novel_views.py);
# novel-views-models: the tiny VLM plans and answers, the demo's MMDiT renders the view (after `make demo`).
novel-views: setup
	@$(PY) -m pipelines.novel_views --config pipelines/evals/novel_views.yaml
novel-views-models: setup tiny-models
	@$(PY) -m pipelines.novel_views --config pipelines/evals/novel_views_models.yaml

# The MLLM trains on the demo's spatial QA (the shards `make demo` writes, or this rule when it has not run).
out/demo/spatial_qa/_manifest.json: | setup
	@$(call RUN_JOB,pipelines/jobs/spatial_qa.yaml --set 'input=procedural://4?seed=0' --out out/demo/spatial_qa)

train-mllm: out/demo/spatial_qa/_manifest.json tiny-models
	@$(PY) -m trainer train --config $(or $(CONFIG),trainer/configs/mllm_sft_tiny.yaml)
	@$(PY) -m trainer eval --config $(or $(CONFIG),trainer/configs/mllm_sft_tiny.yaml)

# The MMDiT trains on cached latents: demo images -> captions -> VAE latents + text features.
train-mmdit: out/demo/rebalanced/_manifest.json
	@$(call RUN_JOB,pipelines/jobs/cache_latents.yaml)
	@$(PY) -m trainer train --config $(or $(CONFIG),trainer/configs/mmdit_t2i_tiny.yaml)
	@$(PY) -m trainer sample --config $(or $(CONFIG),trainer/configs/mmdit_t2i_tiny.yaml)

# RL post-training (trainer/objectives/flow_grpo.py, diffusion_nft.py): reward per reward, kl / r and the loss per
# step in <out_dir>/train_log.jsonl, a sample grid per checkpoint; `make report` draws them. train-grpo scores
# rollouts for the demo's captions (cached latents); train-nft edits the balanced edit triplets (latents cached
# by cache_edit_latents.yaml at out/demo/edit_latents, which `make edit-data` or the demo writes).
train-grpo: out/demo/rebalanced/_manifest.json
	@$(call RUN_JOB,pipelines/jobs/cache_latents.yaml)
	@$(PY) -m trainer train --config $(or $(CONFIG),trainer/configs/grpo_t2i_tiny.yaml)
	@$(PY) -m trainer sample --checkpoint all --config $(or $(CONFIG),trainer/configs/grpo_t2i_tiny.yaml)

train-nft: tiny-models
	@test -f out/demo/edit_latents/_manifest.json || $(MAKE) --no-print-directory edit-data
	@$(PY) -m trainer train --config $(or $(CONFIG),trainer/configs/nft_edit_tiny.yaml)
	@$(PY) -m trainer sample --checkpoint all --config $(or $(CONFIG),trainer/configs/nft_edit_tiny.yaml)

# One HTML report over whatever the stage targets above have written so far (each directory gets its section).
REPORT_DIRS = $(wildcard out/demo/images out/demo/curated_* out/demo/spatial_qa out/demo/captions \
                         out/demo/rebalanced out/demo/rewritten out/demo/latents out/demo/render/* out/demo/train-* out/demo/lift_video/* \
                         out/spatial_qa out/lift_video/* out/render/multiview out/render/spatial_edit out/demo/edit_data out/demo/edit_latents out/text_render/images out/text_render/edits out/text_render/from_prompts \
                         out/train-mllm-tiny out/train-mmdit-tiny out/train-grpo-tiny out/train-nft-tiny)
report: setup
	@$(if $(REPORT_DIRS),$(PY) -m pipelines report --out out/report.html $(REPORT_DIRS),echo "nothing to report yet: run make demo or a stage target first")
