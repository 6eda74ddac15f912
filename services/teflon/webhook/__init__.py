"""teflon webhook."""
