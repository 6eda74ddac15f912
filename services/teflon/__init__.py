"""teflon: turn Falco runtime detections into action inside a Kubernetes cluster."""

__version__ = "0.1.0"
