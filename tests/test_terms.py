"""Per-request terms, answers that are not answers, and variety slots: the pure decisions, without a server."""

from __future__ import annotations

import random

import pytest

from proxy.cache.lookup import Hit
from proxy.canonical import CacheControl, Owner, build_chat_request, tenant_of
from proxy.errors import BadRequestError, ConfigError
from proxy.nonanswers import skip_reason
from proxy.policies import Policy, parse_policy
from proxy.stores.base import Entry
from proxy.terms import ANY_STALENESS, parse_max_stale, parse_threshold, request_terms, terms_headers, usable
from proxy.variety import slot_key, variety_lookup, wants_variety


def chat(text: str = "What is the capital of Peru?", **params):
    body = {"model": "m", "messages": [{"role": "user", "content": text}], **params}
    return build_chat_request(body, Owner(tenant_of("Bearer k")))


def record(created: float, expires: float | None, key: str = "k") -> Entry:
    return Entry(key, "p", "t", "m", "", "c", "", "q", {}, None, created, expires, id=1)


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5", "nan", "high", ""])
def test_invalid_threshold_is_a_400(value):
    with pytest.raises(BadRequestError) as caught:
        parse_threshold(value)
    assert caught.value.status_code == 400 and caught.value.code == "invalid_cache_threshold"


def test_threshold_only_ever_gets_stricter():
    policy = Policy(threshold=0.87, long_threshold=0.92)
    higher = request_terms(chat(), policy, {"x-cache-threshold": "0.95"}, CacheControl()).policy
    assert (higher.threshold, higher.long_threshold) == (0.95, 0.95)
    lower = request_terms(chat(), policy, {"x-cache-threshold": "0.5"}, CacheControl()).policy
    assert (lower.threshold, lower.long_threshold) == (0.87, 0.92)


@pytest.mark.parametrize(("header", "expected"), [
    ("max-stale=30", 30), ("no-cache, max-stale", ANY_STALENESS), ('max-stale="5"', 5), ("max-stale=x", None),
    ("max-age=3", None), (None, None)])
def test_max_stale_parsing(header, expected):
    assert parse_max_stale(header) == expected


def test_time_sensitive_questions_get_the_volatile_ttl_and_no_stale_window():
    policy = Policy(ttl=604800, volatile_ttl=60, stale_while_revalidate=300)
    terms = request_terms(chat("What's the weather in Oslo today?"), policy, {}, CacheControl(max_age=600))
    assert terms.volatile == "relative_day" and terms.policy.ttl == 60 and terms.max_age == 60
    assert terms.max_stale == 0 and terms.cacheable
    timeless = request_terms(chat(), policy, {}, CacheControl())
    assert timeless.volatile is None and timeless.policy.ttl == 604800 and timeless.max_stale == 300
    never = request_terms(chat("What time is it?"), Policy(volatile_ttl=0), {}, CacheControl())
    assert not never.cacheable


def test_stale_window_and_max_age_decide_what_may_answer():
    entry = record(created=100.0, expires=110.0)
    assert usable(entry, 109.0, None, 0) and not usable(entry, 110.0, None, 0)
    assert usable(entry, 120.0, None, 30) and not usable(entry, 140.0, None, 30)
    assert not usable(entry, 120.0, 15, 30)  # max-age wins over the stale window
    assert usable(record(100.0, None), 1e9, None, 0)


def test_ttl_header_shows_what_is_applied_or_what_remains():
    terms = request_terms(chat(), Policy(ttl=3600), {}, CacheControl())
    assert terms_headers(terms, "MISS", None, 0) == {"X-Cache-TTL": "3600"}
    assert terms_headers(terms, "HIT", record(0.0, 100.0), 40.5) == {"X-Cache-TTL": "60"}
    assert terms_headers(terms, "STALE", record(0.0, 100.0), 150.0) == {"X-Cache-TTL": "0"}
    assert terms_headers(terms, "HIT", record(0.0, None), 10.0) == {}
    assert terms_headers(terms, "BYPASS", None, 0) == {}


def answer(**choice) -> dict:
    message = {"role": "assistant", "content": "Lima."}
    message.update(choice.pop("message", {}))
    return {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "message": message,
                                                      **choice}]}


@pytest.mark.parametrize(("completion", "reason"), [
    (answer(), None),
    (answer(message={"content": "  "}), "empty"),
    (answer(message={"content": None}), "empty"),
    (answer(message={"content": None, "tool_calls": [{"id": "c"}]}), None),
    (answer(message={"content": None, "refusal": "No."}), "refusal"),
    (answer(finish_reason="content_filter"), "content_filter"),
    (answer(finish_reason="length"), "length"),
])
def test_answers_that_are_not_answers(completion, reason):
    assert skip_reason(completion, allow_truncated=False) == reason


def test_truncated_answers_allowed_by_policy():
    assert skip_reason(answer(finish_reason="length"), allow_truncated=True) is None


@pytest.mark.parametrize(("data", "message"), [
    ({"volatile_ttl": -1}, "volatile_ttl: expected a number >= 0"),
    ({"variety_fill": 1.5}, "variety_fill: expected a share in [0, 1]"),
    ({"stale_while_revalidate": "soon"}, "stale_while_revalidate: expected int"),
])
def test_bad_freshness_settings_stop_start_up(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_policy({"match": "*", **data}, "policies/x.yaml")


@pytest.mark.parametrize(("params", "wanted"), [
    ({"temperature": 0.7}, True), ({"n": 2}, True), ({"temperature": 0}, False), ({}, False),
    ({"temperature": True}, False)])
def test_variety_is_for_requests_that_ask_for_randomness(params, wanted):
    assert wants_variety(chat(**params), Policy(variety=3)) is wanted
    assert not wants_variety(chat(**params), Policy(variety=0))


@pytest.mark.anyio
async def test_variety_fills_the_next_free_slot_then_picks_at_random(tmp_path, opened):
    request = chat(temperature=1.0)
    policy = Policy(variety=3, variety_fill=0.5)
    terms = request_terms(request, policy, {}, CacheControl())

    class Low(random.Random):
        def random(self) -> float:
            return 0.1

    async with opened(tmp_path) as cache:
        assert (await variety_lookup(cache, request, terms))[1] is None  # empty bucket: the usual lookup
        cache.submit(request, policy, answer())
        await cache.drain()
        for slot in (1, 2):
            filling, lookup = await variety_lookup(cache, request, terms, rng=Low())
            assert lookup is not None and lookup.hit is None
            assert filling.exact_key == slot_key(request.exact_key, slot)
            cache.submit(filling, policy, answer(message={"content": f"answer {slot}"}))
            await cache.drain()
        picked = set()
        for seed in range(30):
            _, lookup = await variety_lookup(cache, request, terms, rng=random.Random(seed))
            assert lookup is not None and isinstance(lookup.hit, Hit)
            picked.add(lookup.hit.record.response["choices"][0]["message"]["content"])
        assert picked == {"Lima.", "answer 1", "answer 2"}


@pytest.mark.parametrize(("answer", "reason"), [
    ({"object": "text_completion", "choices": [{"text": "Lima.", "finish_reason": "stop"}]}, None),
    ({"object": "text_completion", "choices": [{"text": " ", "finish_reason": "stop"}]}, "empty"),
    ({"object": "text_completion", "choices": [{"text": "Li", "finish_reason": "length"}]}, "length"),
    ({"object": "text_completion", "choices": [{"text": "", "finish_reason": "content_filter"}]}, "content_filter"),
    ({"object": "response", "output": [{"type": "message", "content": [{"type": "output_text", "text": "Lima."}]}]},
     None),
    ({"object": "response", "output": [{"type": "message", "content": [{"type": "refusal", "refusal": "No."}]}]},
     "refusal"),
    ({"object": "response", "output": [{"type": "reasoning"}, {"type": "message", "content": []}]}, "empty"),
    ({"object": "response", "output": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, None),
])
def test_non_answers_of_the_other_endpoints(answer, reason):
    assert skip_reason(answer, allow_truncated=False) == reason
