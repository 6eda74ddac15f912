"""The hardening evidence programs: ``make fuzz`` (``fuzz_ingest``, ``fuzz_wire``), ``make chaos``
(``chaos``) and the page they feed (``report`` writes docs/hardening.md). Run from the repository root
as ``python -m hardening.<name>``; the property tests they complement live in ``tests/hardening``.
"""
