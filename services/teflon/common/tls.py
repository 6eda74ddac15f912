"""A server TLS context that follows its files: certificate, key and client CA are reloaded on change.

cert-manager renews certificates (90 days by default) by rewriting the Secret, and the kubelet swaps
the mounted files; a process that read them once at startup serves an expired certificate, or
keeps trusting a rotated-out client CA, until it restarts. ``ReloadingServerTLS.context`` is handed to
the server once; its SNI callback, which OpenSSL calls on every ClientHello (with or without a server
name), moves each new connection onto the context built from the current files. A client CA can only
be replaced that way: OpenSSL can add to a context's trust store but never remove from it.
Connections already open keep the context they started with.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

log = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int], ...]


class ReloadingServerTLS:
    """Server TLS from ``cert_file``/``key_file``; client certificates of ``client_ca_file`` required."""

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> None:
        self._files = [p for p in (cert_file, key_file, client_ca_file) if p is not None]
        self._cert, self._key, self._client_ca = cert_file, key_file, client_ca_file
        self._stamp = self._stamps()
        self.current = self._build()
        self.context = self._build()
        self.context.sni_callback = self._use_current
        self.reloads = 0

    def _stamps(self) -> _Stamp:
        # stat() follows the kubelet's ..data symlink, so a swapped Secret shows as a new inode.
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in (p.stat() for p in self._files))

    def _build(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self._cert), str(self._key))
        if self._client_ca is not None:
            ctx.load_verify_locations(cafile=str(self._client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _use_current(self, sslobj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        if self.current is not self.context:
            sslobj.context = self.current

    def reload_if_changed(self) -> bool:
        """Build a new context if any file changed; new connections use it. A bad set keeps the old one.

        A Secret caught mid-update (key and certificate not matching, a file missing) fails to load; the
        next check tries again.
        """
        try:
            stamp = self._stamps()
        except OSError as exc:
            log.warning("TLS files unreadable; keeping the loaded ones", extra={"error": str(exc)})
            return False
        if stamp == self._stamp:
            return False
        try:
            fresh = self._build()
        except (OSError, ssl.SSLError) as exc:
            log.warning("TLS files did not load; keeping the loaded ones", extra={"error": str(exc)})
            return False
        self.current, self._stamp = fresh, stamp
        self.reloads += 1
        log.info("TLS certificate, key and client CA reloaded", extra={"cert_file": str(self._cert)})
        return True

    async def watch(self, every: float) -> None:
        """Check the files every ``every`` seconds, forever."""
        while True:
            await asyncio.sleep(every)
            self.reload_if_changed()
