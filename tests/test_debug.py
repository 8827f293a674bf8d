"""X-Cache-Debug and the per-rule rejection counter: why a MISS missed, for operators only."""

from __future__ import annotations

import re

import pytest

from .conftest import default_policies
from .test_metrics import scrape

pytestmark = pytest.mark.anyio

TOKEN = "admin-secret-token"
STORED = "Is the museum open on Sundays?"
NEGATED = "Is the museum not open on Sundays?"  # close in words, so the guard is what turns it away
DEBUG = re.compile(r"nearest=(\d+); similarity=(0\.\d{4}|1\.0000); reason=(\S+)")


@pytest.fixture
def loose():
    return default_policies(threshold=0.5, long_threshold=0.5)


async def test_a_miss_names_the_nearest_candidate_and_the_rule_for_the_admin(make_proxy, monkeypatch, loose):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    async with make_proxy(policies=loose) as proxy:
        await proxy.chat(STORED)
        stored = await proxy.chat(STORED)  # an exact hit names the entry's id
        response = await proxy.chat(NEGATED, headers={"X-Cache-Debug": TOKEN})
        assert response.headers["X-Cache-Status"] == "MISS"
        match = DEBUG.fullmatch(response.headers["X-Cache-Debug"])
        assert match is not None, response.headers["X-Cache-Debug"]
        assert match.group(1) == stored.headers["X-Cache-Key"]
        assert 0.5 <= float(match.group(2)) < 1.0
        assert match.group(3) == "negation"
        # The token is Deja's own: it never reaches the upstream.
        assert "x-cache-debug" not in proxy.upstream.requests[-1]["headers"]


async def test_no_debug_header_without_the_admin_token(make_proxy, monkeypatch, loose):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    async with make_proxy(policies=loose) as proxy:
        await proxy.chat(STORED)
        negations = (NEGATED, "Is the museum never open on Sundays?", "Is the museum closed on Sundays?")
        for value, question in zip(("1", "wrong-token", ""), negations, strict=True):
            response = await proxy.chat(question, headers={"X-Cache-Debug": value})
            assert response.headers["X-Cache-Status"] == "MISS"
            assert "X-Cache-Debug" not in response.headers


async def test_no_debug_header_when_no_admin_token_is_configured(make_proxy, monkeypatch, loose):
    monkeypatch.delenv("DEJA_ADMIN_TOKEN", raising=False)
    async with make_proxy(policies=loose) as proxy:
        await proxy.chat(STORED)
        response = await proxy.chat(NEGATED, headers={"X-Cache-Debug": "1"})
        assert "X-Cache-Debug" not in response.headers


async def test_the_config_flag_turns_it_on_for_every_miss(make_proxy, loose):
    async with make_proxy(policies=loose, debug_header=True) as proxy:
        first = await proxy.chat(STORED)
        assert first.headers["X-Cache-Debug"] == "nearest=none"  # nothing stored yet to compare with
        below = await proxy.chat("Where can I buy a train ticket?")
        assert DEBUG.fullmatch(below.headers["X-Cache-Debug"]).group(3) == "threshold"
        hit = await proxy.chat("is the museum open on sundays")
        assert hit.headers["X-Cache-Status"] == "HIT"
        assert "X-Cache-Debug" not in hit.headers


async def test_rejections_are_counted_per_rule_in_metrics(make_proxy, loose):
    async with make_proxy(policies=loose) as proxy:
        await proxy.chat(STORED)
        await proxy.chat(NEGATED)
        await proxy.chat("Is the museum open on Mondays?")
        await proxy.chat("Is the museum open on Sundays?", history=[{"role": "user", "content": "I'm in Paris."}])
        m = await scrape(proxy)
        rejected = {dict(labels)["reason"]: v for (name, labels), v in m.items()
                    if name == "deja_candidates_rejected_total"}
        assert rejected["negation"] == 1
        assert rejected["calendar"] == 2  # both stored questions name Sundays
        assert rejected["context-turns"] >= 1  # "the museum" after "I'm in Paris.": the turns are compared
