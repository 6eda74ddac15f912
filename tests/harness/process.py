"""Run one of teflon's programs (``python -m teflon.webhook`` or ``teflon.metrics``) to its exit, for the
tests that prove bad settings stop it with a clear error.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def run_to_exit(module: str, env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m module`` with exactly ``env``; its exit status and output (never raises on failure)."""
    return subprocess.run(
        [sys.executable, "-m", module],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
