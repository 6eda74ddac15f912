"""scripts/tools.sh places the official falco chart archive for offline builds: from the archive
directory, only with the pinned sha256, never a tampered one."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = (ROOT / "scripts" / "tools.sh").read_text()
VERSION = re.search(r"^FALCO_CHART_VERSION=(\S+)$", TOOLS, re.MULTILINE)
SHA256 = re.search(r"^FALCO_CHART_SHA256=([0-9a-f]{64})$", TOOLS, re.MULTILINE)
assert VERSION, "scripts/tools.sh pins no falco chart version"
assert SHA256, "scripts/tools.sh pins no falco chart sha256"
PINNED = SHA256.group(1)
ARCHIVE = f"falco-{VERSION.group(1)}.tgz"


def _source_archive() -> Path:
    for candidate in (
        ROOT.parent / "shared" / "charts" / ARCHIVE,
        ROOT / "charts" / "teflon" / "charts" / ARCHIVE,
    ):
        if candidate.is_file():
            return candidate
    pytest.skip(f"no {ARCHIVE} on this machine (make tools places it)")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the scripts a clone would have, with an empty charts/teflon/charts/."""
    root = tmp_path / "clone"
    (root / "scripts" / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "tools.sh", root / "scripts" / "tools.sh")
    shutil.copy(ROOT / "scripts" / "tools" / "env.sh", root / "scripts" / "tools" / "env.sh")
    (root / "charts" / "teflon").mkdir(parents=True)
    return root


def _place(root: Path, archives: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TEFLON_CHART_ARCHIVES"}
    if archives is not None:
        env["TEFLON_CHART_ARCHIVES"] = str(archives)
    return subprocess.run(
        ["bash", str(root / "scripts" / "tools.sh"), "chart-deps"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_pinned_sha256_is_the_archive_s(tmp_path: Path) -> None:
    assert hashlib.sha256(_source_archive().read_bytes()).hexdigest() == PINNED


def test_the_archive_is_placed_from_the_archive_directory(tree: Path, tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    shutil.copy(_source_archive(), archives / ARCHIVE)
    stale = tree / "charts" / "teflon" / "charts" / "falco-0.0.1.tgz"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    result = _place(tree, archives)
    assert result.returncode == 0, result.stderr
    placed = tree / "charts" / "teflon" / "charts" / ARCHIVE
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == PINNED
    assert not stale.exists(), "another falco chart version would make helm see two"
    assert f"placing {ARCHIVE}" in result.stderr
    # A second run finds it in place and changes nothing.
    again = _place(tree, archives)
    assert again.returncode == 0
    assert "placing" not in again.stderr


def test_an_archive_that_does_not_match_the_pinned_sha256_is_refused(tree: Path, tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    tampered = bytearray(_source_archive().read_bytes())
    tampered[-1] ^= 0xFF
    (archives / ARCHIVE).write_bytes(bytes(tampered))
    result = _place(tree, archives)
    assert result.returncode != 0
    assert "does not have the pinned sha256" in result.stderr
    assert not (tree / "charts" / "teflon" / "charts" / ARCHIVE).exists()


def test_a_named_archive_directory_without_the_archive_is_an_error(tree: Path, tmp_path: Path) -> None:
    result = _place(tree, tmp_path)
    assert result.returncode != 0
    assert f"has no {ARCHIVE}" in result.stderr
