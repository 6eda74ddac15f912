#!/usr/bin/env bash
# `make demo`: teflon's whole loop on a local control plane, in one command on a fresh machine.
#
#   1. the pinned toolchain (`make tools`) and the local control plane (`scripts/cluster.sh up`),
#      both cached, so a second run starts in seconds;
#   2. charts/teflon installed with helm; its webhook and metrics server run as real processes
#      behind the chart's Services (python -m scripts.demo up);
#   3. a storefront Deployment with the chart's HPA on falco_alerts_per_minute, and an attack
#      replayed as Falco alerts: dry run first, then enforced (python -m scripts.demo attack).
#
# The services keep running afterwards for exploring; `make demo-down` stops them and removes the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/tools/env.sh
source scripts/tools/env.sh

echo "▶ toolchain (make tools; cached)"
scripts/tools.sh
echo "▶ local control plane (scripts/cluster.sh up; cached)"
scripts/cluster.sh up
"$VENV_DIR/bin/python" -m scripts.demo up
"$VENV_DIR/bin/python" -m scripts.demo attack
