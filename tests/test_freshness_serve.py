"""Answers that stay right over time, through a real `deja serve`: time-sensitive TTLs, stale-while-revalidate,
answers that are not answers, a stricter threshold per request, variety buckets."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .test_serve import Serve, wait_for

pytestmark = pytest.mark.model
POLICIES = {
    "default.yaml": "match: '*'\nvolatile_ttl: 3\n",
    "swr.yaml": "match: 'swr-*'\nttl: 1\nstale_while_revalidate: 60\n",
    "trunc.yaml": "match: 'trunc-*'\ncache_truncated: true\n",
    "never.yaml": "match: 'never-*'\nvolatile_ttl: 0\n",
    "variety.yaml": "match: 'var-*'\nvariety: 3\nvariety_fill: 1.0\n",
}


@pytest.fixture
def deja(fake, tmp_path, model_dir) -> Iterator[Serve]:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text in POLICIES.items():
        (policies / name).write_text(text)
    serve = Serve(fake[1], tmp_path / "data", model_dir, "--policies", str(policies))
    try:
        yield serve
    finally:
        code, log = serve.stop()
        assert code == 0, log


def ask(deja: Serve, text: str, *, model: str = "gpt-4o-mini", headers: dict[str, str] | None = None,
        client: httpx.Client | None = None, **params) -> httpx.Response:
    return (client or deja.client).post(
        "/v1/chat/completions", headers={"Authorization": "Bearer sk-test", **(headers or {})},
        json={"model": model, "messages": [{"role": "user", "content": text}], **params})


def content(response: httpx.Response) -> str:
    return response.json()["choices"][0]["message"]["content"]


def metric(deja: Serve, name: str, **labels: str) -> float:
    text = deja.client.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_time_sensitive_question_gets_the_volatile_ttl_and_expires(fake, deja):
    upstream, _ = fake
    question = "What's the weather in Paris today?"
    first = ask(deja, question)
    assert first.headers["x-cache-status"] == "MISS"
    assert first.headers["x-cache-ttl"] == "3" and first.headers["x-cache-volatile"] == "relative_day"
    timeless = ask(deja, "What is the capital of Peru?")
    assert timeless.headers["x-cache-ttl"] == "604800" and "x-cache-volatile" not in timeless.headers
    assert wait_for(lambda: ask(deja, question).headers["x-cache-status"] == "HIT")
    hit = ask(deja, question)
    assert hit.headers["x-cache-status"] == "HIT" and int(hit.headers["x-cache-ttl"]) <= 3
    stored_at = time.time() - int(hit.headers["age"])
    time.sleep(max(0.0, stored_at + 3.5 - time.time()))  # the volatile TTL runs out: a time condition, no event
    calls = upstream.calls
    again = ask(deja, question)
    assert again.headers["x-cache-status"] == "MISS" and upstream.calls == calls + 1
    assert ask(deja, "What is the capital of Peru?").headers["x-cache-status"] == "HIT"
    assert metric(deja, "deja_time_sensitive_total", reason="relative_day") >= 3


def test_volatile_ttl_zero_never_caches_time_sensitive_questions(fake, deja):
    upstream, _ = fake
    for _ in range(2):
        response = ask(deja, "What time is it in Tokyo right now?", model="never-1")
        assert response.headers["x-cache-status"] == "BYPASS" and "x-cache-ttl" not in response.headers
    assert upstream.calls == 2


def test_stale_entry_is_served_at_once_and_refreshed_once_under_concurrency(fake, deja):
    upstream, _ = fake
    upstream.slow_seconds = 2.0
    question = "SLOW: what is the tallest mountain in Africa?"
    first = ask(deja, question, model="swr-1")
    assert first.headers["x-cache-status"] == "MISS" and first.headers["x-cache-ttl"] == "1"
    assert wait_for(lambda: ask(deja, question, model="swr-1").headers["x-cache-status"] == "HIT")
    time.sleep(1.2)  # past the 1 s TTL, inside the 60 s stale window
    clients = [httpx.Client(base_url=deja.base, trust_env=False, timeout=30) for _ in range(10)]
    started = time.perf_counter()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda c: ask(deja, question, model="swr-1", client=c), clients))
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    assert [a.headers["x-cache-status"] for a in answers] == ["STALE"] * 10
    assert all(a.headers["x-cache-ttl"] == "0" and content(a).startswith("answer #1 ") for a in answers)
    assert elapsed < upstream.slow_seconds  # served at once, not after the refresh
    assert wait_for(lambda: upstream.calls == 2)
    assert upstream.requests[1]["body"].get("stream") is None
    assert wait_for(lambda: content(ask(deja, question, model="swr-1")).startswith("answer #2 "))
    assert upstream.calls == 2
    assert metric(deja, "deja_stale_refreshes_total", outcome="started") == 1
    assert metric(deja, "deja_stale_refreshes_total", outcome="replaced") == 1
    assert metric(deja, "deja_stale_refreshes_total", outcome="joined") >= 9


def test_max_stale_zero_on_the_request_wins_over_the_policy_window(fake, deja):
    upstream, _ = fake
    question = "What is the longest river in Asia?"
    ask(deja, question, model="swr-1")
    assert wait_for(lambda: ask(deja, question, model="swr-1").headers["x-cache-status"] == "HIT")
    time.sleep(1.2)
    calls = upstream.calls
    strict = ask(deja, question, model="swr-1", headers={"Cache-Control": "max-stale=0"})
    assert strict.headers["x-cache-status"] == "MISS" and upstream.calls == calls + 1


@pytest.mark.parametrize(("word", "reason"), [
    ("REFUSE", "refusal"), ("EMPTY", "empty"), ("FILTERED", "content_filter"), ("TRUNCATE", "length")])
@pytest.mark.parametrize("stream", [False, True])
def test_answers_that_are_not_answers_are_never_stored(fake, deja, word, reason, stream):
    upstream, _ = fake
    for _ in range(3):
        response = ask(deja, f"{word} tell me about volcanoes", stream=stream)
        assert response.status_code == 200 and response.headers["x-cache-status"] == "MISS"
    assert upstream.calls == 3
    assert metric(deja, "deja_not_stored_total", reason=reason) == 3


def test_truncated_answers_are_stored_when_the_policy_allows(fake, deja):
    ask(deja, "TRUNCATE tell me about glaciers", model="trunc-1")
    assert wait_for(lambda: ask(deja, "TRUNCATE tell me about glaciers",
                                model="trunc-1").headers["x-cache-status"] == "HIT")


def test_stricter_threshold_turns_a_hit_into_a_miss(fake, deja):
    ask(deja, "What is the capital of France?")
    assert wait_for(lambda: ask(deja, "What is the capital of France?").headers["x-cache-status"] == "HIT")
    reworded = "What is the capital city of France?"
    hit = ask(deja, reworded)
    assert hit.headers["x-cache-status"] == "HIT" and hit.headers["x-cache-match"] == "semantic"
    similarity = float(hit.headers["x-cache-similarity"])
    stricter = f"{min(1.0, similarity + 0.002):.4f}"
    assert ask(deja, reworded, headers={"X-Cache-Threshold": stricter}).headers["x-cache-status"] == "MISS"
    lower = ask(deja, reworded, headers={"X-Cache-Threshold": "0.1"})
    assert lower.headers["x-cache-status"] == "HIT"
    bad = ask(deja, reworded, headers={"X-Cache-Threshold": "very"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cache_threshold"


def test_variety_bucket_fills_to_n_and_serves_all_n(fake, deja):
    upstream, _ = fake
    question = "Tell me a joke about penguins"

    def varied() -> httpx.Response:
        return ask(deja, question, model="var-1", temperature=0.9)

    seen: set[str] = set()
    # variety_fill 1.0: every request fills the bucket until it holds 3 answers (those arriving while an answer
    # is being stored are coalesced with its upstream call).
    for _ in range(500):
        seen.add(content(varied()))
        if len(seen) == 3:
            break
    assert len(seen) == 3
    assert wait_for(lambda: all(varied().headers["x-cache-status"] == "HIT" for _ in range(5)))
    calls = upstream.calls
    answers = [varied() for _ in range(40)]
    assert {a.headers["x-cache-status"] for a in answers} == {"HIT"}
    # Every stored answer is served, picked at random (a fill racing the store may have replaced one of `seen`).
    served = {content(a) for a in answers}
    assert len(served) == 3 and all(text.startswith("answer #") for text in served)
    assert upstream.calls == calls >= 3
    assert metric(deja, "deja_variety_total", event="filled") >= 2
    assert metric(deja, "deja_variety_total", event="served") >= 40
    # Without temperature the same policy keeps one answer per question, as usual.
    ask(deja, "Tell me a joke about owls", model="var-1")
    assert wait_for(lambda: ask(deja, "Tell me a joke about owls", model="var-1").headers["x-cache-status"] == "HIT")
    assert len({content(ask(deja, "Tell me a joke about owls", model="var-1")) for _ in range(10)}) == 1
