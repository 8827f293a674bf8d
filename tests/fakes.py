"""The only fake in the suite: an OpenAI-compatible upstream (a Starlette app), plus a plumbing embedder.

The upstream answers "answer #<call number> to: <last user message>", so a test can tell which upstream call an
answer came from. Magic words in the last user message: FAIL500 (500 error), CALL_TOOL (a tool call when tools
are given), BREAK (a stream that stops before [DONE]), SLOW (waits `slow_seconds` first), DRIP (streams a
chunk every 0.2 s), HOLD (counts the call, then waits until the test sets `release`), RATE429 (429 with
Retry-After: 7), GARBAGE (a 200 that is not JSON).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

WORD = re.compile(r"[a-z0-9]+")


class HashEmbedder:
    """Bag of lowercase words hashed into 256 buckets: the same words in any order or case embed identically.
    For tests about plumbing only; tests about meaning use the real model."""

    name = "test-hash@256"
    dim = 256

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in WORD.findall(text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


class BrokenEmbedder(HashEmbedder):
    name = "test-hash@256"  # same name: it takes over the partitions a healthy one made

    def embed(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("embedding model exploded")


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


class FakeUpstream:
    def __init__(self) -> None:
        self.calls = 0
        self.requests: list[dict[str, Any]] = []
        self.slow_seconds = 3.0
        self.release = asyncio.Event()
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/{path:path}", self.echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ])

    async def echo(self, request: Request) -> Response:
        body = await request.body()
        if request.url.path == "/v1/stream":
            async def numbers():
                for i in range(5):
                    yield f"{i}\n".encode()
            return StreamingResponse(numbers(), media_type="text/plain")
        return JSONResponse({"method": request.method, "path": request.url.path, "query": request.url.query,
                             "body_bytes": len(body), "authorization": request.headers.get("authorization")})

    async def chat(self, request: Request) -> Response:
        self.calls += 1
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers)})
        text = last_user_text(body)
        if "HOLD" in text:
            await self.release.wait()
        if "FAIL500" in text:
            return JSONResponse({"error": {"message": "upstream exploded", "type": "server_error", "param": None,
                                           "code": None}}, status_code=500)
        if "RATE429" in text:
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                                           "code": "rate_limit_exceeded"}}, status_code=429,
                                headers={"Retry-After": "7"})
        if "GARBAGE" in text:
            return Response(b"<html>oops</html>", media_type="text/html")
        if "SLOW" in text:
            await asyncio.sleep(self.slow_seconds)
        answer = f"answer #{self.calls} to: {text}"
        tool_calls = None
        if body.get("tools") and "CALL_TOOL" in text:
            tool_calls = [{"id": f"call_{self.calls}", "type": "function",
                           "function": {"name": body["tools"][0]["function"]["name"],
                                        "arguments": json.dumps({"n": self.calls})}}]
        finish = "tool_calls" if tool_calls else "stop"
        base = {"id": f"chatcmpl-{self.calls}", "created": int(time.time()), "model": body.get("model")}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not body.get("stream"):
            message = {"role": "assistant", "content": None if tool_calls else answer}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return JSONResponse({**base, "object": "chat.completion", "usage": usage,
                                 "choices": [{"index": 0, "message": message, "finish_reason": finish}]})

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            event = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            return b"data: " + json.dumps(event).encode() + b"\n\n"

        async def events():
            yield chunk({"role": "assistant", "content": ""})
            if tool_calls:
                call = tool_calls[0]
                yield chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"], "arguments": ""}}]})
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]})
            else:
                for start in range(0, len(answer), 5):
                    yield chunk({"content": answer[start:start + 5]})
                    if "DRIP" in text:
                        await asyncio.sleep(0.2)
                    if "BREAK" in text and start >= 10:
                        raise RuntimeError("upstream dropped the connection")
            yield chunk({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield b"data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [],
                                              "usage": usage}).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


class ThreadedServer:
    """A uvicorn server for an ASGI app on a free loopback port, in a thread (for real-socket tests)."""

    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                   lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)
