"""Reusable test harness: the local control plane (``cluster``), network namespaces that put real
server processes "inside" it (``netns``), throwaway certificates (``certs``) and a minimal extension
API server (``testserver``). See each module's docstring; ``tests/conftest.py`` provides the fixtures.
"""
