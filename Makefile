# teflon: every developer and CI entry point. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TOOLS_DIR := $(CURDIR)/.tools
export PATH := $(TOOLS_DIR)/bin:$(CURDIR)/.venv/bin:$(PATH)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-18s %s\n",$$1,$$2}'

.PHONY: tools
tools: ## Install the pinned toolchain into .tools/ and .venv/ (cached by version)
	@scripts/tools.sh

.PHONY: test
test: tools ## Run every check and test the project has
	@scripts/test.sh

.PHONY: demo
demo: ## Run the whole loop on a local control plane
	@scripts/demo.sh
