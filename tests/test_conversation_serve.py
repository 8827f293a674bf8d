"""Conversations by meaning through a real `deja serve` on loopback (real model, fake upstream): what a client
sees when a second user rewords the first turn and asks the same follow-up, and when the context is swapped."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .test_serve import Serve, wait_for

pytestmark = pytest.mark.model


def ask(deja: Serve, messages: list[dict[str, Any]]) -> httpx.Response:
    return deja.client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-test"},
                            json={"model": "gpt-4o-mini", "messages": messages})


def said(response: httpx.Response) -> dict[str, str]:
    return {"role": "assistant", "content": response.json()["choices"][0]["message"]["content"]}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_reworded_conversation_hits_and_a_swapped_context_misses(fake, tmp_path, model_dir):
    upstream, url = fake
    deja = Serve(url, tmp_path / "data", model_dir)
    try:
        follow_up = user("What if I no longer have access to my email?")
        first = ask(deja, [user("How do I reset my password?")])
        assert first.headers["X-Cache-Status"] == "MISS"
        earlier = [user("How do I reset my password?"), said(first)]
        assert ask(deja, [*earlier, follow_up]).headers["X-Cache-Status"] == "MISS"
        assert wait_for(lambda: ask(deja, [*earlier, follow_up]).headers["X-Cache-Status"] == "HIT")
        calls = upstream.calls

        # Another user rewords the first question: a semantic hit, so the client resends the very same answer.
        second = ask(deja, [user("How can I reset my password?")])
        assert second.headers["X-Cache-Status"] == "HIT" and said(second) == said(first)
        reworded = ask(deja, [user("How can I reset my password?"), said(second), follow_up])
        assert reworded.headers["X-Cache-Status"] == "HIT"
        assert reworded.headers["X-Cache-Match"] == "semantic"
        assert upstream.calls == calls

        # The same follow-up after another topic (the assistant's reply even kept identical) is not served.
        swapped = ask(deja, [user("How do I delete my account?"), said(first), follow_up])
        assert swapped.headers["X-Cache-Status"] == "MISS"
        assert upstream.calls == calls + 1
    finally:
        deja.stop()


def test_a_changed_detail_in_an_earlier_turn_misses(fake, tmp_path, model_dir):
    upstream, url = fake
    deja = Serve(url, tmp_path / "data", model_dir)
    try:
        reply = {"role": "assistant", "content": "Sure, which time would you like?"}
        question = user("Is there a deposit to pay?")
        four = [user("I'd like to book a table for 4 people on Friday"), reply, question]
        assert ask(deja, four).headers["X-Cache-Status"] == "MISS"
        assert wait_for(lambda: ask(deja, four).headers["X-Cache-Status"] == "HIT")
        twelve = [user("I'd like to book a table for 12 people on Friday"), reply, question]
        assert ask(deja, twelve).headers["X-Cache-Status"] == "MISS"
        reworded = [user("Could I book a table for 4 people on Friday?"), reply, question]
        assert ask(deja, reworded).headers["X-Cache-Status"] == "HIT"
    finally:
        deja.stop()
