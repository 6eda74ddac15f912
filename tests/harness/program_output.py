"""Falco's ``program_output``, played exactly, for tests and benchmarks of the program transport.

Falco (``userspace/falco/outputs_program.cpp``) ``popen``s ``program_output.program`` (``/bin/sh -c``)
and writes each alert as one JSON line to its stdin, unbuffered (``fprintf("%s\\n")``); with
``keep_alive: true`` one process takes every alert, with ``keep_alive: false`` each alert gets its own
process and Falco waits for it (``pclose``) before the next.

``ProgramOutput.from_render`` takes ``program`` and ``keep_alive`` from the falco.yaml the chart renders
(``helm template``, ``${VAR}`` expanded from the Falco container's environment as Falco does).
``FalcoProgram`` runs that string byte for byte with this machine's real shell and curl. What stands in
for the cluster: the program's ``HOME`` holds a ``.curlrc`` whose ``connect-to`` sends the webhook
Service's name and port to a local port (cluster DNS and kube-proxy), and ``with_client_dir`` moves the
client certificate paths from the Falco pod's Secret mount to local files.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.chart.falco_config import load_from_render
from tests.chart.rendering import render

#: Where the official chart mounts Falco's client certificate Secret (falco.certs.existingClientSecret).
CLIENT_CERT_DIR = "/etc/falco/certs/client"


@dataclass(frozen=True)
class ProgramOutput:
    """``program_output`` of a falco.yaml, and the webhook URL its program sends to."""

    program: str
    keep_alive: bool
    url: str

    @classmethod
    def from_render(cls, **values: Any) -> ProgramOutput:
        """Render the chart with the program transport (and ``values``) and read Falco's configuration."""
        transport = {"transport": "program", **values.pop("falcoOutput", {})}
        loaded = load_from_render(render(None, falcoOutput=transport, **values))
        if loaded.errors:
            raise AssertionError(f"Falco would refuse the rendered configuration: {loaded.errors}")
        config = loaded.config
        if config["program_output"]["enabled"] is not True or config["http_output"]["enabled"] is not False:
            raise AssertionError("the program transport must be the only one: every alert sent once")
        program = str(config["program_output"]["program"])
        (url,) = [word.strip("'\"") for word in program.split() if "://" in word]
        return cls(program, bool(config["program_output"]["keep_alive"]), url)

    def with_client_dir(self, directory: Path) -> ProgramOutput:
        """The same program reading Falco's client certificate files from ``directory``."""
        return replace(self, program=self.program.replace(CLIENT_CERT_DIR, str(directory)))


class FalcoProgram:
    """Runs a program as Falco's program output does; ``port`` is where the webhook Service's port is."""

    def __init__(self, output: ProgramOutput, home: Path, port: int) -> None:
        self.output = output
        target = urlsplit(output.url)
        home.mkdir(parents=True, exist_ok=True)
        (home / ".curlrc").write_text(f'connect-to = "{target.hostname}:{target.port}:127.0.0.1:{port}"\n')
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        """``popen(program, "w")``: ``/bin/sh -c program`` with a pipe as its stdin (stderr kept here)."""
        proc = subprocess.Popen(
            ["/bin/sh", "-c", self.output.program],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def write(proc: subprocess.Popen[bytes], line: str | bytes) -> None:
        """One alert line, written at once as Falco's unbuffered ``fprintf`` does."""
        assert proc.stdin is not None
        data = line.encode() if isinstance(line, str) else line
        os.write(proc.stdin.fileno(), data + b"\n")

    @staticmethod
    def pclose(proc: subprocess.Popen[bytes], seconds: float = 30) -> int:
        """Close the program's stdin and wait for it, as Falco does per alert or when it stops."""
        assert proc.stdin is not None
        proc.stdin.close()
        return proc.wait(timeout=seconds)

    @staticmethod
    def cut(proc: subprocess.Popen[bytes]) -> None:
        """The program dies at once, shell and curl (OOM kill, node loss), mid-stream."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
