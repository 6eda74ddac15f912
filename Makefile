# teflon: every developer and CI entry point. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TOOLS_DIR := $(CURDIR)/.tools
export PATH := $(TOOLS_DIR)/bin:$(CURDIR)/.venv/bin:$(PATH)
# helm keeps its plugins (helm-unittest), repositories and caches inside .tools, never in $HOME.
export HELM_PLUGINS := $(TOOLS_DIR)/helm/plugins
export HELM_CONFIG_HOME := $(TOOLS_DIR)/helm/config
export HELM_CACHE_HOME := $(TOOLS_DIR)/helm/cache
export HELM_DATA_HOME := $(TOOLS_DIR)/helm/data
export UV_PYTHON_DOWNLOADS := never

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-18s %s\n",$$1,$$2}'

.PHONY: tools
tools: ## Install the pinned toolchain into .tools/ and .venv/ (cached by version)
	@scripts/tools.sh

.PHONY: test
test: tools ## Run every check and test the project has
	@scripts/test.sh

# --- checks (scripts/test.sh; `scripts/test.sh --list` names each check) ---
.PHONY: lint
lint: tools ## Lint: ruff, mypy --strict, import-linter, yamllint, shellcheck, hadolint, actionlint
	@scripts/test.sh lint

.PHONY: unit
unit: tools ## pytest without the tests that need the local control plane
	@scripts/test.sh unit

.PHONY: pytest
pytest: tools ## The whole pytest suite, cluster tests included
	@scripts/test.sh pytest

.PHONY: chart-lint
chart-lint: tools ## Chart: ct lint + helm unittest, schema validation, helm 4 pass, README drift
	@scripts/test.sh chart

.PHONY: docs
docs: tools ## Regenerate the chart README from values.yaml (helm-docs)
	@helm-docs --chart-search-root charts

.PHONY: lock
lock: ## Regenerate requirements/*.txt (hash-locked) from pyproject.toml, then sync .venv
	@scripts/tools.sh lock && scripts/tools.sh

.PHONY: fmt
fmt: tools ## Format and auto-fix Python code (ruff)
	@ruff format . && ruff check --fix .

.PHONY: demo
demo: ## Run the whole loop on a local control plane
	@scripts/demo.sh

# --- metrics ---
.PHONY: bench-metrics
bench-metrics: ## Benchmark: p50/p99 of a pods/* custom-metrics query over 1,000 pods, cached and uncached
	@.venv/bin/python -m bench.metrics

# --- webhook ---
.PHONY: bench-webhook
bench-webhook: ## Benchmark: alerts/s, p50/p99 at fixed rates, RSS after 1M alerts over 100k pods (BENCH_ARGS=--quick)
	@.venv/bin/python -m bench.run --only ingest --only memory $(BENCH_ARGS) --out build/bench/webhook.json
	@.venv/bin/python -m json.tool build/bench/webhook.json

.PHONY: bench-trace
bench-trace: ## The API calls of one enforced label and delete, timed, into docs/benchmarks.md (needs the control plane)
	@.venv/bin/python -m bench.trace

# --- local control plane ---
.PHONY: cluster-up cluster-down cluster-status
cluster-up: ## Start the local control plane (etcd, kube-apiserver, controllers, kwok); KUBECONFIG=.cluster/kubeconfig
	@scripts/cluster.sh up

cluster-down: ## Stop the local control plane and remove its state
	@scripts/cluster.sh down

cluster-status: ## Show the local control plane's processes and health
	@scripts/cluster.sh status

# --- container images ---
.PHONY: images images-test images-clean
images: ## Build teflon-webhook and teflon-metrics with buildah; OCI archives in build/images/
	@scripts/images.sh build

images-test: tools images ## Smoke-test both images with podman (read-only root, non-root user)
	@scripts/images.sh test

images-clean: ## Remove the image storage (/var/lib/teflon/containers) and build/images/
	@scripts/images.sh clean

# --- evidence: benchmarks, fuzzing, fault injection ---
FUZZ_CASES ?= 100000
BENCH_ARGS ?=
.PHONY: peers
peers: ## Build falcosidekick and Falco Talon from their pinned release archives (cached by sha256)
	@scripts/peers.sh falcosidekick falco-talon

.PHONY: bench
bench: tools ## Benchmarks (BENCH_ARGS=--quick|--skip-cluster): writes docs/benchmarks.md and its plots
	@.venv/bin/python -m bench.run $(BENCH_ARGS) --out build/bench/results.json
	@.venv/bin/python -m bench.report --results build/bench/results.json

.PHONY: fuzz
fuzz: ## Fuzz the webhook's HTTP API (FUZZ_CASES=100000); summary in docs/hardening/fuzz.json
	@.venv/bin/python -m hardening.fuzz_ingest --cases $(FUZZ_CASES) --out docs/hardening/fuzz.json
	@.venv/bin/python -m hardening.fuzz_wire --out docs/hardening/fuzz-wire.json
	@.venv/bin/python -m hardening.report

# `stop`, not `down`: `down` also removes the host's unreachable routes, which a second cluster on this
# machine (.cluster) still relies on.
.PHONY: evidence-cluster-down
evidence-cluster-down: ## Stop the control plane make bench/chaos started (build/evidence-cluster) and remove it
	@TEFLON_CLUSTER_STATE=$(CURDIR)/build/evidence-cluster scripts/cluster.sh stop
	@rm -rf build/evidence-cluster

CHAOS_ARGS ?=
.PHONY: chaos
chaos: tools ## Fault injection on a local control plane of its own (CHAOS_ARGS=--quick); docs/hardening.md
	@status=0 && .venv/bin/python -m hardening.chaos $(CHAOS_ARGS) --out docs/hardening/chaos.json \
		|| status=$$?; .venv/bin/python -m hardening.report; exit $$status

# --- end to end: the whole loop on the local control plane, and the demo ---
.PHONY: e2e demo-down
e2e: tools ## End-to-end suite (pytest -m e2e): ct install, upgrade, alerts -> responses, metrics, HPA
	@pytest -m e2e $(PYTEST_ARGS)

demo-down: ## Stop the demo's services, uninstall its release, delete its namespaces (the cluster keeps running)
	@.venv/bin/python -m scripts.demo down
