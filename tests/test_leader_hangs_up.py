"""A coalesced miss whose leader's client hangs up, through a real `deja serve`: the followers still get the
leader's upstream answer (one upstream call in all) and it is stored."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .chaos.harness import Deja, wait_for
from .fakes import last_user_text

pytestmark = pytest.mark.model

FOLLOWERS = 3


def waiting(deja: Deja) -> float:
    found = re.search(r"^deja_coalesced_waiting (\S+)$", deja.client.get("/metrics").text, re.M)
    return float(found.group(1)) if found else -1.0


def calls_for(upstream, question: str) -> int:
    return sum(last_user_text(r["body"]) == question for r in upstream.requests)


def content(response: httpx.Response) -> str:
    if response.headers["content-type"].startswith("text/event-stream"):
        return "".join(re.findall(r'"content": ?"([^"]*)"', response.text))
    return response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed-leader", "plain-leader"])
def test_followers_get_the_answer_when_the_leader_hangs_up(fake, tmp_path, model_dir, stream):
    upstream, url = fake
    # DRIP: a chunk every 0.6 s (about 8 s in all), so that on a loaded machine the followers join while the
    # leader's stream is still out; SLOW: nothing for 3 s, then the answer.
    upstream.drip_seconds = 0.6
    question = f"{'DRIP' if stream else 'SLOW'} the leader hangs up, the followers wait for it"
    deja = Deja(tmp_path, url, model_dir).wait_ready()
    headers = {"Authorization": "Bearer sk-chaos"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
    hung_up = threading.Event()
    try:
        with ThreadPoolExecutor(FOLLOWERS + 1) as pool, httpx.Client(base_url=deja.base, trust_env=False,
                                                                 timeout=httpx.Timeout(30, read=1.0)) as leader:
            def follow(n: int) -> httpx.Response:
                with httpx.Client(base_url=deja.base, trust_env=False, timeout=30) as own:
                    return own.post("/v1/chat/completions", headers=headers, json={**body, "stream": n == 0})

            def join_followers() -> list:
                assert wait_for(lambda: calls_for(upstream, question) == 1)
                futures = [pool.submit(follow, n) for n in range(FOLLOWERS)]
                assert wait_for(lambda: waiting(deja) == FOLLOWERS), "the followers never joined the flight"
                return futures

            if stream:
                with leader.stream("POST", "/v1/chat/completions", headers=headers,
                                   json={**body, "stream": True}) as streamed:
                    lines = streamed.iter_lines()  # kept: a dropped iterator closes the connection at once
                    assert next(lines).startswith("data: {")
                    futures = join_followers()
                hung_up.set()  # the leader read one chunk and closed its connection
            else:
                futures = [pool.submit(join_followers)]
                with pytest.raises(httpx.ReadTimeout):  # gives up after 1 s of the upstream's 3 s
                    leader.post("/v1/chat/completions", headers=headers, json=body)
                hung_up.set()
                futures = futures[0].result()
            responses = [f.result() for f in futures]
        assert hung_up.is_set()
        assert [r.status_code for r in responses] == [200] * FOLLOWERS
        assert all(r.headers["x-cache-coalesced"] == "true" for r in responses)
        answers = {content(r) for r in responses}
        assert len(answers) == 1 and re.fullmatch(rf"answer #\d+ to: {question}", answers.pop())
        assert calls_for(upstream, question) == 1
        assert wait_for(lambda: deja.chat(question).headers["x-cache-status"] == "HIT")
        assert calls_for(upstream, question) == 1
    finally:
        assert deja.stop() == 0
