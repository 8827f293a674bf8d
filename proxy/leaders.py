"""A flight's leader, shielded from its own client: the leader's upstream call belongs to its followers too.

The leader forwards in a task of its own (`lead`), so the leader's request being cancelled (its client hung up, an
ASGI server cancelling the handler) leaves the upstream call running: the answer still lands for the followers and
is written back. A streamed answer is read from the upstream by a pump task (`Relay`) and handed to the leader's
client through a queue; when that client goes away, the pump goes on while followers wait for the answer, and
stops (closing the upstream stream, storing nothing, as for any client that hangs up mid-stream) when none do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from .cache.flights import Failure, Flight, FlightTable, UpstreamReply
from .errors import UpstreamTimeoutError, UpstreamUnreachableError

Reply = TypeVar("Reply", bound=UpstreamReply)
Landed = TypeVar("Landed", bound=Response | UpstreamReply)
# Tasks that outlive the request that started them: the event loop keeps only weak references to tasks.
_RUNNING: set[asyncio.Future[Any]] = set()


def _keep(task: asyncio.Future[Any]) -> None:
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)


class Relay:
    """Pumps `chunks` (the tee'd upstream stream, which assembles, lands and stores the answer) in its own task."""

    def __init__(self, chunks: AsyncGenerator[bytes, None], flight: Flight) -> None:
        self.flight = flight
        # One chunk ahead at most: while the leader reads, the upstream is read at its pace, as without a relay.
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        self._leader_here = True
        self._task = asyncio.ensure_future(self._pump(chunks))
        _keep(self._task)

    async def _pump(self, chunks: AsyncGenerator[bytes, None]) -> None:
        # Never cancelled from outside: a task cancelled before it starts runs no `finally`, and the flight would
        # stay open and the upstream response unclosed. It stops itself at the next chunk nobody waits for.
        try:
            async for chunk in chunks:
                if self._leader_here:
                    await self._queue.put(chunk)
                elif not self.flight.followers:
                    break
        finally:
            await chunks.aclose()  # closes the upstream stream (tee_stream's own `finally`)
            self.flight.land(None)  # no-op when the tee landed the answer
            if self._leader_here:
                await self._queue.put(None)

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            while (chunk := await self._queue.get()) is not None:
                yield chunk
        finally:
            self.leader_gone()

    def leader_gone(self) -> None:
        """The leader's client stopped reading: the pump goes on for the followers, or stops when there are none."""
        self._leader_here = False
        while not self._queue.empty():  # a pump waiting to hand over a chunk goes on
            self._queue.get_nowait()


class FlightStreamingResponse(StreamingResponse):
    """A leader's relayed stream. If it is never sent or its client hangs up, the relay is told so."""

    def __init__(self, relay: Relay, **kwargs: Any) -> None:
        super().__init__(relay.stream(), **kwargs)
        self.relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.relay.leader_gone()


async def lead(flight: Flight, forwarding: Awaitable[Response]) -> Response:
    """Await the leader's forwarding in its own task: cancelling the leader does not cancel the flight."""
    task = asyncio.ensure_future(_landing(flight, forwarding))
    _keep(task)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_orphaned)
        raise


async def _landing(flight: Flight, work: Awaitable[Landed]) -> Landed:
    result = None
    try:
        result = await work
        return result
    except (UpstreamUnreachableError, UpstreamTimeoutError) as exc:
        flight.land(Failure(exc))
        raise
    finally:
        # A relayed stream lands its flight itself, a reply is the outcome, anything else releases the followers.
        if not isinstance(result, FlightStreamingResponse):
            flight.land(result if isinstance(result, UpstreamReply) else None)


def _orphaned(task: asyncio.Future[Response]) -> None:
    """The leader left before its forwarding ended: nobody will send the response."""
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is None and isinstance(response := task.result(), FlightStreamingResponse):
            response.relay.leader_gone()


async def shared_call(flights: FlightTable, key: str, call: Callable[[], Awaitable[Reply]]) -> tuple[Reply, bool]:
    """One upstream call for concurrent identical requests (`key`): the reply, and whether another request made
    it. The leader's call runs in its own task, so its client hanging up does not end it. A leader that got no
    reply (nor a shared failure) lets each follower call for itself."""
    flight, leads = flights.join(key)
    if not leads:
        outcome = await flight.wait()
        if isinstance(outcome, Failure):
            raise outcome.raised()
        if isinstance(outcome, UpstreamReply):
            flights.coalesced += 1
            return outcome, True  # type: ignore[return-value]  # the leader's call made it: a Reply
        return await call(), False
    task = asyncio.ensure_future(_landing(flight, call()))
    _keep(task)
    return await asyncio.shield(task), False
