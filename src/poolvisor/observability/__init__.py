"""Observability: process instruments for Prometheus, structured logs with request ids, alert rules.

- instruments.py: the process-wide metric objects services feed (placement latency, queue depth,
  committed events by kind), exposed by every app's own registry (api/metrics.py);
- logs.py: `--log-format json|text` and the request id carried by every log line of a request;
- rules.py: the alert rules as pure functions of numbers (services/alerts.py evaluates them).
"""
