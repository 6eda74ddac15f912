"""Units stay small (CONTRIBUTING): no module over 400 lines and no class over 250 in ``services/``."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
MODULE_LINES = 400
CLASS_LINES = 250
# The responder orchestrates; what it decides and records lives in its own modules.
RESPONDER_LINES = 200


def _classes(tree: ast.Module) -> list[ast.ClassDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]


def test_no_module_and_no_class_in_services_is_too_long() -> None:
    too_long: list[str] = []
    for path in sorted(SERVICES.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MODULE_LINES:
            too_long.append(f"{path.relative_to(SERVICES)}: {lines} lines")
        for cls in _classes(ast.parse(text)):
            size = (cls.end_lineno or cls.lineno) - cls.lineno + 1
            if size > CLASS_LINES:
                too_long.append(f"{path.relative_to(SERVICES)}:{cls.name}: {size} lines")
    assert too_long == []


def test_the_responder_stays_an_orchestrator() -> None:
    tree = ast.parse((SERVICES / "teflon" / "webhook" / "responder.py").read_text(encoding="utf-8"))
    (responder,) = [c for c in _classes(tree) if c.name == "Responder"]
    assert (responder.end_lineno or responder.lineno) - responder.lineno + 1 < RESPONDER_LINES
