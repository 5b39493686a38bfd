"""Webhook delivery against a local HTTP server: retries on 5xx, a timeout, no retry on 4xx,
and `lossboard alerts --webhook` posting its JSON."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lossboard.dashboard.webhook import post_json
from lossboard.errors import ConfigError


class Receiver:
    """A local server answering with the statuses queued in ``replies`` (then 200), optionally
    sleeping ``delay_s`` first; it records every body it got."""

    def __init__(self) -> None:
        self.replies: list[int] = []
        self.delay_s = 0.0
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(body)
                time.sleep(receiver.delay_s)
                status = receiver.replies.pop(0) if receiver.replies else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_delivers_json(receiver: Receiver) -> None:
    result = post_json(receiver.url, {"alerts": [{"rule": "x"}]})
    assert (result.ok, result.status, result.attempts) == (True, 200, 1)
    assert json.loads(receiver.bodies[0]) == {"alerts": [{"rule": "x"}]}


def test_retries_on_server_errors(receiver: Receiver) -> None:
    receiver.replies = [500, 503]
    result = post_json(receiver.url, {"a": 1}, retries=3, backoff_s=0.01)
    assert (result.ok, result.attempts) == (True, 3)
    assert len(receiver.bodies) == 3


def test_gives_up_after_the_retries(receiver: Receiver) -> None:
    receiver.replies = [500] * 5
    result = post_json(receiver.url, {"a": 1}, retries=2, backoff_s=0.01)
    assert (result.ok, result.status, result.attempts) == (False, 500, 3)
    assert "HTTP 500" in result.error


def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.replies = [400]
    result = post_json(receiver.url, {"a": 1}, retries=3, backoff_s=0.01)
    assert (result.ok, result.status, result.attempts) == (False, 400, 1)


def test_timeout(receiver: Receiver) -> None:
    receiver.delay_s = 1.0
    started = time.monotonic()
    result = post_json(receiver.url, {"a": 1}, timeout_s=0.2, retries=1, backoff_s=0.01)
    assert not result.ok and result.attempts == 2 and result.status is None
    assert "timed out" in result.error
    assert time.monotonic() - started < 1.5  # two 0.2 s attempts, not two 1 s answers


def test_refused_connection_is_reported_not_raised() -> None:
    result = post_json("http://127.0.0.1:9/hook", {"a": 1}, retries=1, backoff_s=0.01,
                       timeout_s=1.0)
    assert not result.ok and result.attempts == 2 and result.error


def test_rejects_non_http_urls() -> None:
    with pytest.raises(ConfigError, match="http"):
        post_json("file:///etc/passwd", {})


def test_alerts_command_posts_to_the_webhook(receiver: Receiver, tmp_path_factory) -> None:
    from lossboard.dashboard.cli import app, ensure_sample_database

    db = tmp_path_factory.mktemp("hook") / "lossboard.duckdb"
    ensure_sample_database(db)
    config = Path(__file__).resolve().parents[1] / "sample_data" / "lossboard.toml"
    result = CliRunner().invoke(app, ["alerts", "--db", str(db), "--config", str(config),
                                      "--as-of", "2026-10-13T09:00Z", "--webhook", receiver.url])
    assert result.exit_code == 2, result.output
    (body,) = receiver.bodies
    payload = json.loads(body)
    assert payload["exit_code"] == 2 and payload["as_of"] == "2026-10-13T09:00:00Z"
    assert [a["rule"] for a in payload["alerts"]] == ["nonfinite_scores"]
    assert payload["alerts"][0]["fingerprint"]
