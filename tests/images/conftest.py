"""Fixtures for the image smoke tests: the images ``scripts/images.sh build`` made, and podman.

``scripts/images.sh test`` (``make images-test``) runs these tests with ``TEFLON_IMAGE_WEBHOOK`` and
``TEFLON_IMAGE_METRICS`` naming the images and ``TEFLON_IMAGES_ROOT``/``TEFLON_IMAGES_RUNROOT`` their
storage. Run any other way, without those names, the tests are skipped with that reason.
"""

from __future__ import annotations

import os
import shutil

import pytest

from .podman import Podman


def _image(var: str) -> str:
    image = os.environ.get(var, "")
    if not image:
        pytest.skip(f"{var} is not set: the image smoke tests run through `make images-test`")
    return image


@pytest.fixture(scope="session")
def podman() -> Podman:
    _image("TEFLON_IMAGE_WEBHOOK")
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (scripts/apt-packages.txt; make tools)", pytrace=False)
    return Podman(
        root=os.environ.get("TEFLON_IMAGES_ROOT", "/var/lib/teflon/containers"),
        runroot=os.environ.get("TEFLON_IMAGES_RUNROOT", "/run/teflon/containers"),
    )


@pytest.fixture(scope="session")
def webhook_image() -> str:
    return _image("TEFLON_IMAGE_WEBHOOK")


@pytest.fixture(scope="session")
def metrics_image() -> str:
    return _image("TEFLON_IMAGE_METRICS")
