"""The HTTP side: webhook server, health and readiness probes, metrics endpoint."""
