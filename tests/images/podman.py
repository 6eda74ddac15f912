"""Run the built teflon images with podman, hardened as a Kubernetes pod would run them.

Every container gets a read-only root file system with only ``/tmp`` writable, the numeric non-root
user, no capabilities, no privilege escalation and lowered ulimits; it shares the host network but
the servers inside bind 127.0.0.1 only. runc and cgroupfs, because this machine has neither crun nor
systemd. The image storage is the one ``scripts/images.sh`` builds into.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

RUN_AS = "65532:65532"
HARDENING = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp:rw,size=64m,mode=1777",
    f"--user={RUN_AS}",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--ulimit=nofile=4096:4096",
    "--ulimit=nproc=4096:4096",
    "--network=host",
)

# Imports every module of the teflon package; prints how many.
IMPORT_ALL = (
    "import importlib, pkgutil, teflon\n"
    "names = [m.name for m in pkgutil.walk_packages(teflon.__path__, 'teflon.')]\n"
    "for name in names: importlib.import_module(name)\n"
    "print(len(names))"
)


class ContainerError(RuntimeError):
    pass


@dataclass(frozen=True)
class Podman:
    root: str
    runroot: str

    def command(self, *args: str) -> list[str]:
        return [
            "podman",
            f"--root={self.root}",
            f"--runroot={self.runroot}",
            "--storage-driver=vfs",
            "--runtime=runc",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            *args,
        ]

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise ContainerError(f"podman {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def image_config(self, image: str) -> dict[str, Any]:
        """The OCI image config (``User``, ``ExposedPorts``, ``Labels``, ``Entrypoint``...)."""
        doc = json.loads(self.run("image", "inspect", image).stdout)
        config: dict[str, Any] = doc[0]["Config"]
        return config

    def exec_once(
        self, image: str, *argv: str, entrypoint: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in a fresh hardened container and return its result (not checked)."""
        ep = [f"--entrypoint={entrypoint}"] if entrypoint else []
        return self.run("run", "--rm", *HARDENING, *ep, image, *argv, check=False)

    @contextlib.contextmanager
    def container(
        self,
        image: str,
        *,
        env: Mapping[str, str],
        volumes: Sequence[tuple[Path, str]] = (),
    ) -> Iterator[Container]:
        """A detached hardened container of ``image``, removed afterwards."""
        flags = [f"--env={k}={v}" for k, v in env.items()]
        flags += [f"--volume={src}:{dst}:ro" for src, dst in volumes]
        cid = self.run("run", "--detach", *HARDENING, *flags, image).stdout.strip()
        box = Container(self, cid)
        try:
            yield box
        finally:
            self.run("rm", "--force", "--time=2", cid, check=False)


@dataclass(frozen=True)
class Container:
    podman: Podman
    id: str

    def state(self) -> dict[str, Any]:
        doc = json.loads(self.podman.run("inspect", "--type=container", self.id).stdout)
        state: dict[str, Any] = doc[0]["State"]
        return state

    def logs(self) -> str:
        proc = self.podman.run("logs", self.id, check=False)
        return proc.stdout + proc.stderr

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll ``probe`` until it returns a value; fail at once, with the logs, if the container exits."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = probe()
            except (OSError, httpx.HTTPError) as exc:  # not up yet; reported if it never comes up
                last = exc
            else:
                if value is not None:
                    return value
            if not self.state()["Running"]:
                raise ContainerError(f"the container exited before {what}:\n{self.logs()}")
            time.sleep(0.5)
        raise ContainerError(f"timed out waiting for {what} (last error: {last!r}):\n{self.logs()}")

    def stop(self, timeout: int = 20) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        self.podman.run("stop", f"--time={timeout}", self.id, timeout=timeout + 30)
        return int(self.state()["ExitCode"])
