"""``make demo``: teflon's whole loop on the local control plane, narrated in the terminal.

    python -m scripts.demo up       install the chart and start its services (a background supervisor)
    python -m scripts.demo attack   deploy the storefront, replay an attack in dry run, then enforced
    python -m scripts.demo down     stop the services, uninstall the chart, delete the demo's namespaces
    python -m scripts.demo serve    the supervisor itself (started by ``up``)

The supervisor runs the chart's webhook and metrics server as real processes behind the chart's
Services (``tests/harness/stack.py``), holding the machine-wide lock on ``custom.metrics.k8s.io``, and
restarts them when their Deployment changes, as a rollout would. It keeps running after the demo so
the aggregated API can be explored; ``make demo-down`` stops it.
"""

from __future__ import annotations

import argparse
import sys

from scripts.demo.attack import attack
from scripts.demo.supervisor import down, serve, up
from tests.harness.cluster import CommandError


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "attack", "down", "serve"])
    args = parser.parse_args()
    try:
        if args.command == "serve":
            return serve()
        if args.command == "up":
            return up()
        if args.command == "attack":
            return attack()
        return down()
    except CommandError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
