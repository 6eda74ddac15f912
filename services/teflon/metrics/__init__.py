"""teflon metrics."""
