"""Webhook delivery: one JSON POST, retried with backoff, each attempt with a timeout.

The standard library's urllib is enough for one POST; no other network access happens in
lossboard (the dashboard and the metrics server only listen). Retried: connection errors,
timeouts, HTTP 408 / 429 and 5xx. Not retried: other 4xx (the receiver refused the payload;
sending it again would not help).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from lossboard.errors import ConfigError

_RETRY_STATUS = {408, 429}


@dataclass(frozen=True)
class Delivery:
    """What happened to one webhook POST: ``ok`` (a 2xx answer), the last HTTP ``status``
    (None when no answer came), ``attempts`` made and the last ``error`` as text."""

    ok: bool
    status: int | None
    attempts: int
    error: str | None


def post_json(url: str, payload: Any, *, timeout_s: float = 5.0, retries: int = 3,
              backoff_s: float = 0.5) -> Delivery:
    """POST ``payload`` as JSON to ``url``; up to ``1 + retries`` attempts.

    Waits ``backoff_s · 2^k`` seconds before retry k + 1. Never raises for network or HTTP
    errors: the result says what happened (the caller decides whether that fails a run).
    """
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"webhook url must start with http:// or https://, got {url!r}")
    if timeout_s <= 0 or retries < 0:
        raise ConfigError(f"webhook timeout_s must be > 0 and retries >= 0, got {timeout_s!r} "
                          f"and {retries!r}")
    body = json.dumps(payload, default=str).encode()
    status: int | None = None
    error: str | None = None
    for attempt in range(1, retries + 2):
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "lossboard-alerts"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return Delivery(True, response.status, attempt, None)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500 and exc.code not in _RETRY_STATUS:
                return Delivery(False, status, attempt, error)
        except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError) as exc:
            status = None
            reason = getattr(exc, "reason", exc)
            error = f"timed out after {timeout_s:g} s" if isinstance(
                reason, (TimeoutError, socket.timeout)) else f"{type(reason).__name__}: {reason}"
        if attempt <= retries:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    return Delivery(False, status, retries + 1, error)
