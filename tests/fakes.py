"""The only fake in the suite: an OpenAI-compatible upstream (a Starlette app), plus a plumbing embedder.

The upstream answers "answer #<call number> to: <last user message>", so a test can tell which upstream call an
answer came from. Magic words in the last user message: FAIL500 (500 error), CALL_TOOL (a tool call when tools
are given), BREAK (a stream that stops before [DONE]), SLOW (waits `slow_seconds` first), DRIP (streams a
chunk every `drip_seconds`, 0.2 s), HOLD (counts the call, then waits until the test sets `release`), RATE429 (429 with
Retry-After: 7), GARBAGE (a 200 that is not JSON); answers that are not answers:
REFUSE (a `refusal`), EMPTY (empty content), FILTERED (finish_reason content_filter), TRUNCATE (length).
`fail_next = N` makes the next N chat calls fail with a 500 whatever they ask.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import struct
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
        self.drip_seconds = 0.2
        self.fail_next = 0
        self.release = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, once a HOLD request waits
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/{path:path}", self.echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ])

    def release_held(self) -> None:
        """Set `release` from the test's thread: the HOLD requests wait on the server's loop."""
        if self.loop is None:
            self.release.set()
        else:
            self.loop.call_soon_threadsafe(self.release.set)

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
            self.loop = asyncio.get_running_loop()
            await self.release.wait()
        failing, self.fail_next = self.fail_next > 0, max(0, self.fail_next - 1)
        if "FAIL500" in text or failing:
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
        finish = ("tool_calls" if tool_calls else "content_filter" if "FILTERED" in text
                  else "length" if "TRUNCATE" in text else "stop")
        if "EMPTY" in text:
            answer = ""
        refusal = "I can't help with that." if "REFUSE" in text else None
        base = {"id": f"chatcmpl-{self.calls}", "created": int(time.time()), "model": body.get("model")}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not body.get("stream"):
            message = {"role": "assistant", "content": None if tool_calls or refusal else answer}
            if refusal:
                message["refusal"] = refusal
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
            elif refusal:
                yield chunk({"refusal": refusal})
            else:
                for start in range(0, len(answer), 5):
                    yield chunk({"content": answer[start:start + 5]})
                    if "DRIP" in text:
                        await asyncio.sleep(self.drip_seconds)
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


class RealisticUpstream(FakeUpstream):
    """Answers like the real API (late 2025) on every cached endpoint, its Azure routes included: the fields a
    replay must keep (service_tier, system_fingerprint, refusal: null, usage details, per-chunk obfuscation, typed
    Responses events). Magic words: CALL_TOOL (a tool call when tools are given), REASON (reasoning content),
    FAIL400 (an error), OLD_SERVER (rejects stream_options), FAILSTREAM (a Responses stream ending in
    response.failed), HOLD in an `input` (counts the call, then waits until the test sets `release`).
    `calls_to[path]` counts upstream calls, `embedded` the embedding inputs received, `seen`
    each call's path, query, headers and body."""

    def __init__(self) -> None:
        super().__init__()
        self.calls_to: dict[str, int] = {}
        self.embedded: list[Any] = []
        self.seen: list[dict[str, Any]] = []
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self.route(self.chat_api), methods=["POST"]),
            Route("/v1/completions", self.route(self.completions_api), methods=["POST"]),
            Route("/v1/responses", self.route(self.responses_api), methods=["POST"]),
            Route("/v1/embeddings", self.route(self.embeddings_api), methods=["POST"]),
            Route("/openai/deployments/{deployment}/chat/completions", self.route(self.chat_api), methods=["POST"]),
            Route("/openai/deployments/{deployment}/embeddings", self.route(self.embeddings_api), methods=["POST"]),
            Route("/openai/deployments/{deployment}/responses", self.route(self.responses_api), methods=["POST"]),
            Route("/openai/responses", self.route(self.responses_api), methods=["POST"]),
            Route("/openai/v1/chat/completions", self.route(self.chat_api), methods=["POST"]),
            Route("/v1/{path:path}", self.echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ])

    def route(self, answer: Any) -> Any:
        async def handle(request: Request) -> Response:
            path = request.url.path
            self.calls_to[path] = self.calls_to.get(path, 0) + 1
            self.calls += 1
            body = await request.json()
            self.seen.append({"path": path, "query": request.url.query, "headers": dict(request.headers),
                              "body": dict(body)})
            if "deployment" in request.path_params:
                body.setdefault("model", request.path_params["deployment"])
            if "HOLD" in json.dumps(body.get("input")):
                await self.release.wait()
            return answer(body)
        return handle

    @staticmethod
    def sse(events: list[tuple[str | None, Any]]) -> StreamingResponse:
        async def stream():
            for name, data in events:
                head = f"event: {name}\n" if name else ""
                yield (head + "data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n").encode()
        return StreamingResponse(stream(), media_type="text/event-stream; charset=utf-8")

    def error(self, cause: str = "FAIL400") -> JSONResponse:
        message = "Unrecognized request argument supplied: stream_options" if cause == "stream_options" else \
            "FAIL400 requested"
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                       "code": "invalid_value"}}, status_code=400)

    def chat_api(self, body: dict[str, Any]) -> Response:
        text = last_user_text(body)
        if "FAIL400" in text or ("OLD_SERVER" in text and "stream_options" in body):
            return self.error("stream_options" if "OLD_SERVER" in text else "FAIL400")
        answer = f"answer #{self.calls} to: {text}"
        tools = body.get("tools") or []
        call = None
        if tools and "CALL_TOOL" in text:
            call = {"id": f"call_{self.calls}", "type": "function",
                    "function": {"name": tools[0]["function"]["name"], "arguments": json.dumps({"n": self.calls})}}
        reasoning = "Let me think about this." if "REASON" in text else None
        finish = "tool_calls" if call else "stop"
        base = {"id": f"chatcmpl-up{self.calls}", "created": int(time.time()), "model": body["model"] + "-2024",
                "service_tier": "default", "system_fingerprint": "fp_fake123"}
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if call else answer, "refusal": None,
                                       "annotations": []}
            if reasoning:
                message["reasoning_content"] = reasoning
            if call:
                message["tool_calls"] = [call]
            return JSONResponse({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]})
        with_usage = (body.get("stream_options") or {}).get("include_usage")
        chunk_base = {**base, "object": "chat.completion.chunk", **({"usage": None} if with_usage else {})}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> tuple[None, dict[str, Any]]:
            return None, {**chunk_base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                     "finish_reason": finish_reason}], "obfuscation": "xyz"}

        events = [chunk({"role": "assistant", "content": None if call else "", "refusal": None})]
        if reasoning:
            events += [chunk({"reasoning_content": reasoning[i:i + 6]}) for i in range(0, len(reasoning), 6)]
        if call:
            events.append(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function", "function": {
                "name": call["function"]["name"], "arguments": ""}}]}))
            events.append(chunk({"tool_calls": [{"index": 0, "function": {
                "arguments": call["function"]["arguments"]}}]}))
        else:
            events += [chunk({"content": answer[i:i + 5]}) for i in range(0, len(answer), 5)]
        events.append(chunk({}, finish))
        if with_usage:
            events.append((None, {**chunk_base, "choices": [], "usage": usage, "obfuscation": "xy"}))
        return self.sse([*events, (None, "[DONE]")])

    def completions_api(self, body: dict[str, Any]) -> Response:
        prompt = body["prompt"]
        answer = f" completion #{self.calls} of: {prompt}"
        base = {"id": f"cmpl-up{self.calls}", "created": int(time.time()), "model": body["model"],
                "system_fingerprint": None}
        usage = {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
        if not body.get("stream"):
            return JSONResponse({**base, "object": "text_completion", "usage": usage, "choices": [
                {"text": answer, "index": 0, "logprobs": None, "finish_reason": "stop"}]})
        with_usage = (body.get("stream_options") or {}).get("include_usage")
        events: list[tuple[str | None, Any]] = [
            (None, {**base, "object": "text_completion", "choices": [
                {"text": answer[i:i + 7], "index": 0, "logprobs": None,
                 "finish_reason": "stop" if i + 7 >= len(answer) else None}]})
            for i in range(0, len(answer), 7)]
        if with_usage:
            events.append((None, {**base, "object": "text_completion", "choices": [], "usage": usage}))
        return self.sse([*events, (None, "[DONE]")])

    def responses_api(self, body: dict[str, Any]) -> Response:
        given = body.get("input")
        text = given if isinstance(given, str) else last_user_text({"messages": given or []})
        if "FAIL400" in text:
            return self.error()
        output: list[dict[str, Any]] = []
        if "REASON" in text:
            output.append({"id": f"rs_{self.calls}", "type": "reasoning", "summary": [], "encrypted_content": None,
                           "status": None})
        tools = body.get("tools") or []
        if tools and "CALL_TOOL" in text:
            output.append({"id": f"fc_{self.calls}", "type": "function_call", "status": "completed",
                           "call_id": f"call_{self.calls}", "name": tools[0]["name"],
                           "arguments": json.dumps({"n": self.calls})})
        else:
            fmt = (body.get("text") or {}).get("format") or {}
            answer = json.dumps(sample(fmt["schema"])) if fmt.get("type") == "json_schema" else \
                f"response #{self.calls} to: {text}"
            output.append({"id": f"msg_{self.calls}", "type": "message", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": answer}]})
        response = {
            "id": f"resp_up{self.calls}", "object": "response", "created_at": int(time.time()), "status": "completed",
            "background": False, "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
            "max_output_tokens": None, "model": body["model"] + "-2024", "output": output,
            "parallel_tool_calls": True, "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default", "store": True,
            "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto",
            "tools": tools, "top_p": 1.0, "truncation": "disabled", "user": None, "metadata": {},
            "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 9,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 21}}
        if not body.get("stream"):
            return JSONResponse(response)
        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        if "FAILSTREAM" in text:
            return self.sse([("response.created", {"type": "response.created", "sequence_number": 0,
                                                   "response": pending}),
                             ("response.failed", {"type": "response.failed", "sequence_number": 1, "response": {
                                 **pending, "status": "failed", "error": {"code": "server_error",
                                                                          "message": "boom"}}})])
        events: list[tuple[str, dict[str, Any]]] = [("response.created", {"response": pending}),
                                                    ("response.in_progress", {"response": pending})]
        for index, item in enumerate(output):
            where = {"item_id": item["id"], "output_index": index}
            started = {**item, "status": "in_progress"}
            if item["type"] == "message":
                started["content"] = []
            if item["type"] == "function_call":
                started["arguments"] = ""
            events.append(("response.output_item.added", {"output_index": index, "item": started}))
            if item["type"] == "message":
                part = item["content"][0]
                at = {**where, "content_index": 0}
                events.append(("response.content_part.added", {**at, "part": {**part, "text": ""}}))
                events += [("response.output_text.delta", {**at, "delta": part["text"][i:i + 6], "logprobs": [],
                                                           "obfuscation": "ab"})
                           for i in range(0, len(part["text"]), 6)]
                events.append(("response.output_text.done", {**at, "text": part["text"], "logprobs": []}))
                events.append(("response.content_part.done", {**at, "part": part}))
            if item["type"] == "function_call":
                events.append(("response.function_call_arguments.delta", {**where, "delta": item["arguments"]}))
                events.append(("response.function_call_arguments.done", {**where, "arguments": item["arguments"]}))
            events.append(("response.output_item.done", {"output_index": index, "item": item}))
        events.append(("response.completed", {"response": response}))
        return self.sse([(name, {"type": name, "sequence_number": n, **data})
                         for n, (name, data) in enumerate(events)])

    def embeddings_api(self, body: dict[str, Any]) -> Response:
        given = body["input"]
        items = [given] if isinstance(given, str) or (given and isinstance(given[0], int)) else given
        if any("FAIL400" in str(item) for item in items):
            return self.error()
        self.embedded.extend(items)
        data = []
        for index, item in enumerate(items):
            digest = hashlib.sha256(json.dumps([body["model"], item]).encode()).digest()
            vector = [(b - 128) / 128.0 for b in digest[:body.get("dimensions") or 8]]
            encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() \
                if body.get("encoding_format") == "base64" else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(item) // 4 + 1 if isinstance(item, str) else len(item) for item in items)
        return JSONResponse({"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def sample(schema: dict[str, Any]) -> Any:
    """A value that fits a (simple) JSON schema: what a structured-output answer would look like."""
    kind = schema.get("type", "object")
    if kind == "object":
        return {name: sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [sample(schema.get("items") or {"type": "string"})]
    return {"integer": 42, "number": 1.5, "boolean": True}.get(kind, "value")
