"""Metrics, traces and structured logs of the gateway (interceptor + boundary helpers)."""
