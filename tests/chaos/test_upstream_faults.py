"""Upstream faults against a real `deja serve`: each is answered (passed through, or Deja's own error marked
ERROR), none is cached, and the proxy keeps serving; plus the client mistakes that used to reset the connection."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from ..test_serve import free_port
from .harness import Deja, wait_for

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def deja(fake, tmp_path_factory, model_dir) -> Iterator[Deja]:
    upstream, url = fake
    upstream.slow_seconds = 4.0
    proxy = Deja(tmp_path_factory.mktemp("faults"), url, model_dir,
                 settings={"upstream_read_timeout": 1.0}).wait_ready()
    yield proxy
    assert proxy.stop() == 0


def calls_for(upstream, text: str) -> int:
    return sum(1 for r in upstream.requests if r["body"]["messages"][-1]["content"] == text)


def test_429_passes_through_with_retry_after_and_is_not_cached(deja, fake):
    upstream, _ = fake
    for _ in range(2):
        response = deja.chat("RATE429 please")
        assert response.status_code == 429 and response.headers["retry-after"] == "7"
        assert response.headers["x-cache-status"] == "MISS"
        assert response.json()["error"]["type"] == "rate_limit_error"
    assert calls_for(upstream, "RATE429 please") == 2


def test_5xx_passes_through_and_is_not_cached(deja, fake):
    upstream, _ = fake
    assert [deja.chat("FAIL500 now").status_code for _ in range(2)] == [500, 500]
    assert calls_for(upstream, "FAIL500 now") == 2


def test_non_json_200_passes_through_and_is_not_cached(deja, fake):
    upstream, _ = fake
    for _ in range(2):
        response = deja.chat("GARBAGE reply")
        assert response.status_code == 200 and response.text == "<html>oops</html>"
    assert calls_for(upstream, "GARBAGE reply") == 2


def test_cut_stream_ends_with_an_error_event_and_is_not_cached(deja, fake):
    upstream, _ = fake
    for _ in range(2):
        response = deja.chat("BREAK this stream please", stream=True)
        assert response.status_code == 200
        assert '"upstream_error"' in response.text and "[DONE]" not in response.text
    assert calls_for(upstream, "BREAK this stream please") == 2


def test_slow_sse_is_relayed_as_it_comes_then_cached(deja):
    arrivals = []
    with deja.client.stream("POST", "/v1/chat/completions", headers={"Authorization": "Bearer sk-chaos"},
                            json={"model": "gpt-4o-mini", "stream": True,
                                  "messages": [{"role": "user", "content": "DRIP slowly to me"}]}) as response:
        for _ in response.iter_lines():
            arrivals.append(time.monotonic())
    assert arrivals[-1] - arrivals[0] > 1.0  # relayed chunk by chunk, not buffered to the end
    assert wait_for(lambda: deja.chat("DRIP slowly to me").headers["x-cache-status"] == "HIT")


def test_hung_upstream_is_a_504_and_the_proxy_keeps_serving(deja):
    started = time.monotonic()
    with httpx.Client(base_url=deja.base, trust_env=False, timeout=30) as other:
        response = deja.chat("SLOW and hung")
        assert other.get("/healthz").status_code == 200
    assert response.status_code == 504 and response.headers["x-cache-status"] == "ERROR"
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 3.5


def test_client_disconnect_mid_stream_stores_nothing(deja, fake):
    upstream, _ = fake
    # A namespace of its own: at the default threshold "DRIP slowly to me" (stored above) would answer it.
    own = {"X-Cache-Namespace": "hang-up"}
    with deja.client.stream("POST", "/v1/chat/completions", headers={"Authorization": "Bearer sk-chaos", **own},
                            json={"model": "gpt-4o-mini", "stream": True,
                                  "messages": [{"role": "user", "content": "DRIP then I hang up"}]}) as response:
        next(response.iter_bytes())
    time.sleep(0.5)
    assert deja.chat("DRIP then I hang up", headers=own).headers["x-cache-status"] == "MISS"
    assert calls_for(upstream, "DRIP then I hang up") == 2


def test_refused_upstream_is_a_502(tmp_path, model_dir):
    refused = Deja(tmp_path, f"http://127.0.0.1:{free_port()}/v1", model_dir).wait_ready()
    try:
        response = refused.chat("anyone there?")
        assert response.status_code == 502 and response.headers["x-cache-status"] == "ERROR"
        assert response.json()["error"]["code"] == "upstream_unreachable"
        assert refused.client.get("/healthz").json()["status"] == "ok"  # the upstream is not Deja's health
    finally:
        assert refused.stop() == 0


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/v1/chat/completions", '{"model": "m", "messages": ' + "[" * 3000 + "]" * 3000 + "}", 400),
    ("GET", "/v1/../_stats", "", 400),
    ("GET", "/admin/entries/%C2%B2", "", 404),  # admin is off here: 404, never a 500
])
def test_client_mistakes_get_an_answer_and_keep_the_connection(deja, method, path, body, status):
    connection = http.client.HTTPConnection("127.0.0.1", deja.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.putheader("Authorization", "Bearer sk-chaos")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body.encode())
        first = connection.getresponse()
        assert first.status == status and first.getheader("x-cache-status") == "ERROR"
        assert set(json.loads(first.read())["error"]) == {"message", "type", "param", "code"}
        connection.request("GET", "/healthz")  # the same connection still serves
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_headers_over_max_header_bytes_get_a_431_and_reach_no_handler(deja, fake):
    """`deja serve` parses with httptools, which has no header bound of its own: the app enforces the setting."""
    upstream, _ = fake
    question = "headers too large for this proxy"
    big = {"X-Padding": "x" * 17_000}  # over the default 16384 with the request line and the other headers
    refused = deja.chat(question, headers=big)
    assert refused.status_code == 431 and refused.headers["x-cache-status"] == "ERROR"
    error = refused.json()["error"]
    assert error["code"] == "request_headers_too_large" and error["param"] == "max_header_bytes"
    assert "max_header_bytes" in error["message"]
    assert calls_for(upstream, question) == 0
    assert deja.client.get("/v1/models", headers=big).status_code == 431  # pass-through too
    assert deja.client.get("/healthz", params={"q": "y" * 17_000}).status_code == 431  # the query counts
    fits = deja.chat(question, headers={"X-Padding": "x" * 15_000})
    assert fits.status_code == 200 and calls_for(upstream, question) == 1
    assert deja.client.get("/healthz").status_code == 200  # the same connection goes on serving
