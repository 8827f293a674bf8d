"""Single-flight coalescing: concurrent identical misses make one upstream call, and every caller gets its answer.

Keyed by the exact key, which leaves out `stream`: a streaming and a plain request for the same answer share a
flight, and each caller gets the answer in its own shape (the cache's SSE replay for streaming followers).

What followers receive, decided once:
  - the leader's complete answer (`Answer`), or the upstream's HTTP error reply (`UpstreamReply`: the upstream
    answered exactly this request with it; it is passed on, never cached);
  - the leader's own upstream failure (`Failure`: unreachable, or no answer within the upstream timeout): the
    followers answer with the same error instead of waiting that long again on their own upstream calls;
  - nothing (None) when the leader ended without any of these — stream broken, unstorable answer, or its client
    gone mid-stream with no follower waiting. Each follower then forwards its own request: a transient failure is
    not multiplied. A leader whose client hangs up while followers wait still finishes its upstream call for them
    (leaders.py).
Requests with Cache-Control no-store or no-cache neither lead nor join (they ask for their own upstream call).
A landed answer stays joinable until write-back has stored it, so late arrivals do not call the upstream again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DejaError


@dataclass(frozen=True)
class Answer:
    completion: dict[str, Any]


@dataclass(frozen=True)
class UpstreamReply:
    status_code: int
    headers: dict[str, str]
    content: bytes


@dataclass(frozen=True)
class Failure:
    error: DejaError

    def raised(self) -> DejaError:
        """A fresh copy for each follower to raise (one exception object must not be raised by many tasks)."""
        return type(self.error)(self.error.message, param=self.error.param, code=self.error.code)


Outcome = Answer | UpstreamReply | Failure | None


class Flight:
    def __init__(self, table: FlightTable, key: str) -> None:
        self.table = table
        self.key = key
        self.followers = 0
        self._outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    @property
    def landed(self) -> bool:
        return self._outcome.done()

    def land(self, outcome: Outcome, *, keep: bool = False) -> None:
        """Publish the leader's outcome (first call wins). `keep`: stay joinable until `FlightTable.stored`."""
        if self._outcome.done():
            return
        self._outcome.set_result(outcome)
        if not (keep and isinstance(outcome, Answer)):
            self.table.remove(self)

    async def wait(self) -> Outcome:
        # Shielded: a follower that hangs up must not cancel the outcome every other follower waits for.
        return await asyncio.shield(self._outcome)


class FlightTable:
    def __init__(self, released: Callable[[str], None] | None = None) -> None:
        self._flights: dict[str, Flight] = {}
        self.coalesced = 0  # followers served so far, for metrics
        # Told each key whose flight is over (the cache releases its cross-replica lease then).
        self.released = released

    def __len__(self) -> int:
        return len(self._flights)

    @property
    def waiting(self) -> int:
        """Followers of the flights still open."""
        return sum(flight.followers for flight in self._flights.values())

    def join(self, key: str) -> tuple[Flight, bool]:
        """The flight for `key` and whether the caller leads it (and so must land it)."""
        flight = self._flights.get(key)
        if flight is not None:
            flight.followers += 1
            return flight, False
        flight = self._flights[key] = Flight(self, key)
        return flight, True

    def remove(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
            if self.released is not None:
                self.released(flight.key)

    def stored(self, key: str) -> None:
        """Write-back is done with `key`: the store answers from now on, so a landed flight can go."""
        flight = self._flights.get(key)
        if flight is not None and flight.landed:
            del self._flights[key]
            if self.released is not None:
                self.released(key)
