"""SIGTERM ends `deja serve` within `shutdown_timeout` with exit 0, even when upstream calls never answer: requests
in flight, a leader's call and a stale entry's background refresh all hang, while answers sent just before the
signal still wait in the write-back queue (they are stored: the restarted proxy serves them)."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ..fakes import FakeUpstream, ThreadedServer
from .harness import Deja, wait_for

pytestmark = pytest.mark.model

SHUTDOWN_TIMEOUT = 6.0
# Exit is os._exit at the deadline at the latest; this is the time a loaded machine may take to notice it.
EXIT_SLACK = 3.0


def policies(where: Path) -> Path:
    where.mkdir()
    (where / "default.yaml").write_text("match: '*'\n")
    (where / "swr.yaml").write_text("match: 'swr-*'\nttl: 1\nstale_while_revalidate: 600\n")
    return where


def test_sigterm_with_hung_upstream_calls_exits_0_within_the_deadline(tmp_path, model_dir):
    upstream = FakeUpstream()  # "HOLD" questions wait for upstream.release: cleared, they never get an answer
    with ThreadedServer(upstream.app) as url:
        settings = {"shutdown_timeout": SHUTDOWN_TIMEOUT, "policies_dir": str(policies(tmp_path / "policies"))}
        deja = Deja(tmp_path, url, model_dir, settings=settings).wait_ready()
        stale_question = "HOLD how tall is the stale tower?"
        upstream.release.set()  # its first call is answered, its refresh will not be
        assert deja.chat(stale_question, model="swr-model").headers["x-cache-status"] == "MISS"
        assert wait_for(lambda: deja.chat(stale_question, model="swr-model").headers["x-cache-status"] == "HIT")
        upstream.release.clear()
        time.sleep(1.1)  # past the entry's 1 s TTL: the next hit is stale and starts a refresh
        assert deja.chat(stale_question, model="swr-model").headers["x-cache-status"] == "STALE"

        hung = [f"HOLD question number {i}" for i in range(3)]
        outcomes: dict[str, str] = {}

        def ask(text: str, stream: bool) -> None:
            try:
                with httpx.Client(base_url=deja.base, trust_env=False, timeout=60) as client:
                    reply = client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-chaos"},
                                        json={"model": "gpt-4o-mini", "stream": stream,
                                              "messages": [{"role": "user", "content": text}]})
                    outcomes[text] = str(reply.status_code)
            except httpx.HTTPError as exc:
                outcomes[text] = type(exc).__name__

        askers = [threading.Thread(target=ask, args=(text, i == 0)) for i, text in enumerate(hung)]
        # A follower of the first: its leader's call runs in a task of its own, outside uvicorn's requests.
        askers.append(threading.Thread(target=ask, args=(hung[1], False)))
        for t in askers:
            t.start()
        def arrived(text: str) -> int:
            return sum(text in str(r["body"]) for r in upstream.requests)

        # The stale entry's first call and its refresh, and one call for each hung question (the follower's
        # leader asks for both).
        assert wait_for(lambda: arrived("stale tower") == 2 and all(arrived(text) == 1 for text in hung))

        answered = [f"what is {i} plus {i}?" for i in range(12)]
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(lambda q: deja.chat(q).headers["x-cache-status"], answered)) == {"MISS"}
        deja.client.close()
        deja.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = deja.exit_code(SHUTDOWN_TIMEOUT + EXIT_SLACK + 30)
        took = time.monotonic() - signalled
        for t in askers:
            t.join(10)
        upstream.release_held()  # the fake server can stop: its held requests end
        log = deja.log
        assert code == 0, log
        assert took < SHUTDOWN_TIMEOUT + EXIT_SLACK, f"exit {took:.1f} s after SIGTERM:\n{log}"
        assert "giving up 1 background refreshes" in log, log
        assert sorted(outcomes) == sorted(hung) and "200" not in outcomes.values()  # nobody got an answer

        restarted = Deja(tmp_path, url, model_dir, data_dir=deja.data_dir, settings=settings).wait_ready()
        try:
            assert {restarted.chat(q).headers["x-cache-status"] for q in answered} == {"HIT"}
        finally:
            assert restarted.stop() == 0
