"""The Exchange's decision: each kind of bypass carries its reason, which the request path logs (log_level: debug)
and which never changes what the client gets (BYPASS, the upstream's answer, nothing stored)."""

import logging

import pytest

from proxy.policies import Policy, PolicySet

pytestmark = pytest.mark.anyio


async def test_each_bypass_names_its_reason(make_proxy, caplog):
    caplog.set_level(logging.DEBUG, logger="deja.decide")
    policies = PolicySet([Policy(threshold=0.95), Policy(match="private-*", mode="off")])
    async with make_proxy(policies=policies) as proxy:
        first = await proxy.chat("tell me a story", headers={"Cache-Control": "no-store"})
        off = await proxy.chat("tell me a story", model="private-model")
        chained = await proxy.client.post("/v1/responses", headers={"Authorization": "Bearer sk-a"}, json={
            "model": "gpt-4o-mini", "input": "and then?", "previous_response_id": "resp_1"})
        await proxy.cache.drain()
        again = await proxy.chat("tell me a story")
    assert [r.headers["x-cache-status"] for r in (first, off, chained)] == ["BYPASS"] * 3
    assert again.headers["x-cache-status"] == "MISS"  # no bypassed answer was stored
    said = [r.getMessage() for r in caplog.records if r.name == "deja.decide"]
    assert said == ["/v1/chat/completions bypasses the cache: no-store",
                    "/v1/chat/completions bypasses the cache: policy off",
                    "/v1/responses bypasses the cache: previous_response_id"]
