# shellcheck shell=bash
# Shared by scripts/tools.sh and scripts/test.sh (sourced, not run): where the toolchain lives and
# the environment that keeps helm away from the user's own configuration and plugins.
# The Makefile exports the same variables, so `make` targets and direct script runs agree.

TEFLON_ROOT="${TEFLON_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
TOOLS_DIR="${TEFLON_ROOT}/.tools"
TOOLS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/teflon"
VENV_DIR="${TEFLON_ROOT}/.venv"

export HELM_PLUGINS="${TOOLS_DIR}/helm/plugins"
export HELM_CONFIG_HOME="${TOOLS_DIR}/helm/config"
export HELM_CACHE_HOME="${TOOLS_DIR}/helm/cache"
export HELM_DATA_HOME="${TOOLS_DIR}/helm/data"
export UV_PYTHON_DOWNLOADS=never
export PATH="${TOOLS_DIR}/bin:${VENV_DIR}/bin:${PATH}"
