"""How every hardening program hands in its result: the summary as JSON on stdout and, with ``--out``,
in the file that ``hardening.report`` turns into docs/hardening.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def publish(summary: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(summary, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
