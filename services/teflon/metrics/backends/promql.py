"""PromQL templates with safe substitution, and a client for the Prometheus HTTP query API.

Templates name placeholders (``{{ .namespace }}``, ``{{ .names }}``, ``{{ .selector }}``,
``{{ .window }}``). Every value is escaped for the place it lands in, so an object name or a selector
cannot close a string and add PromQL of its own:

* ``namespace``: the namespace, escaped for a double-quoted PromQL string;
* ``names``: the object names as an anchored regular-expression alternation (``a|b``), each name
  regex-escaped and the whole escaped for a double-quoted string; use it with ``=~``;
* ``selector``: the ``metricLabelSelector`` as label matchers (``k="v",k2=~"a|b"``) with a trailing
  comma when non-empty, so ``{namespace="{{ .namespace }}",{{ .selector }}}`` works with or without one;
  keys must be PromQL label names;
* ``window``: the metric's window as a duration (``120s``).
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import ssl
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from teflon.metrics.backends import BackendError, InvalidMetricSelector, Series
from teflon.metrics.config import PLACEHOLDER
from teflon.metrics.selectors import Selector
from teflon.metrics.telemetry import Telemetry

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def promql_string(value: str) -> str:
    """Escape ``value`` for the inside of a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def _regex_literal(value: str) -> str:
    return re.escape(value)


def selector_matchers(selector: Selector) -> str:
    """PromQL label matchers for ``selector``, each followed by a comma; '' when empty."""
    out: list[str] = []
    for req in selector.requirements:
        if not _LABEL_NAME.match(req.key):
            raise InvalidMetricSelector(f"{req.key!r} is not a Prometheus label name")
        if req.op == "=":
            out.append(f'{req.key}="{promql_string(req.values[0])}"')
        elif req.op == "!=":
            out.append(f'{req.key}!="{promql_string(req.values[0])}"')
        elif req.op in ("in", "notin"):
            alt = "|".join(_regex_literal(v) for v in req.values)
            op = "=~" if req.op == "in" else "!~"
            out.append(f'{req.key}{op}"{promql_string(alt)}"')
        elif req.op == "exists":
            out.append(f'{req.key}!=""')
        else:
            out.append(f'{req.key}=""')
    return "".join(m + "," for m in out)


def render_query(
    template: str, *, namespace: str, names: tuple[str, ...], selector: Selector, window_seconds: int
) -> str:
    """Substitute the placeholders of ``template`` with escaped values."""
    values = {
        "namespace": promql_string(namespace),
        "names": promql_string("|".join(_regex_literal(n) for n in names)),
        "selector": selector_matchers(selector),
        "window": f"{window_seconds}s",
    }

    def sub(m: re.Match[str]) -> str:
        return values[m.group(1)]

    return PLACEHOLDER.sub(sub, template)


def parse_vector(doc: Any) -> list[Series]:
    """Series of an instant-query answer (vector or scalar); ``BackendError`` on anything else."""
    if not isinstance(doc, dict) or doc.get("status") != "success":
        err = doc.get("error", "unknown error") if isinstance(doc, dict) else "not a JSON object"
        raise BackendError(f"query failed: {err}")
    data = doc.get("data") or {}
    kind = data.get("resultType")
    result: Any = data.get("result")
    try:
        if kind == "scalar":
            return [Series({}, _finite(result[1]))]
        if kind != "vector":
            raise BackendError(f"query returned a {kind}, expected an instant vector or scalar")
        return [Series(dict(item["metric"]), _finite(item["value"][1])) for item in result]
    except (KeyError, IndexError, TypeError) as exc:
        raise BackendError(f"malformed query answer: {exc!r}") from exc


def _finite(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError) as exc:
        raise BackendError(f"sample value {text!r} is not a number") from exc
    if not math.isfinite(value):
        raise BackendError(f"sample value {text} has no Quantity form (NaN or infinite)")
    return value


class FileSecret:
    """A secret read from a mounted file, re-read when the file changes (Secrets are updated in place)."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._stamp: tuple[int, int] = (-1, -1)
        self._value = ""

    def value(self) -> str:
        try:
            st = self._path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._value = self._path.read_text(encoding="utf-8").strip()
                self._stamp = stamp
        except OSError as exc:
            raise BackendError(f"cannot read secret file {self._path}: {exc}") from exc
        return self._value


def tls_verify(ca_file: str) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


class PromQueryClient:
    """``GET {base}{path}?query=...`` with auth headers, an overall deadline and optional 429 backoff."""

    def __init__(
        self,
        *,
        backend: str,
        query_url: str,
        headers: Callable[[], dict[str, str]],
        timeout: float,
        telemetry: Telemetry,
        verify: ssl.SSLContext | bool = True,
        max_retries: int = 0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._backend = backend
        self._url = query_url
        self._headers = headers
        self._timeout = timeout
        self._telemetry = telemetry
        self._retries = max_retries
        self._http = http or httpx.AsyncClient(verify=verify, timeout=timeout)

    async def query(self, promql: str) -> list[Series]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                return await self._query(promql, started)
        except TimeoutError as exc:
            self._telemetry.backend_error(self._backend, "timeout")
            raise BackendError(f"{self._backend}: no answer within {self._timeout}s") from exc
        except BackendError:
            self._telemetry.backend_error(self._backend, "error")
            raise
        finally:
            self._telemetry.backend_latency(self._backend, time.perf_counter() - started)

    async def _query(self, promql: str, started: float) -> list[Series]:
        attempt = 0
        while True:
            try:
                resp = await self._http.get(self._url, params={"query": promql}, headers=self._headers())
            except httpx.HTTPError as exc:
                raise BackendError(f"{self._backend}: {type(exc).__name__}: {exc}") from exc
            if resp.status_code in (429, 503) and attempt < self._retries:
                self._telemetry.backend_error(self._backend, "throttled")
                delay = self._backoff(resp, attempt)
                remaining = self._timeout - (time.perf_counter() - started)
                if delay >= remaining:
                    raise BackendError(
                        f"{self._backend}: throttled (HTTP {resp.status_code}); retry after {delay:.1f}s "
                        "would exceed the query deadline"
                    )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            try:
                doc = resp.json()
            except ValueError:
                doc = None
            if resp.status_code != 200:
                detail = doc.get("error") if isinstance(doc, dict) else resp.text[:200]
                raise BackendError(f"{self._backend}: HTTP {resp.status_code}: {detail}")
            try:
                return parse_vector(doc)
            except BackendError as exc:
                raise BackendError(f"{self._backend}: {exc}") from exc

    @staticmethod
    def _backoff(resp: httpx.Response, attempt: int) -> float:
        header = resp.headers.get("Retry-After")
        if header:
            try:
                return max(0.0, float(header))
            except ValueError:
                try:
                    return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
                except (TypeError, ValueError):
                    pass
        base: float = 0.1 * (2**attempt)
        return base + random.uniform(0, base)  # noqa: S311 - jitter, not cryptography

    async def aclose(self) -> None:
        await self._http.aclose()
