"""Code shared by the webhook and the metrics server: wire models, Kubernetes access, logging, settings."""
