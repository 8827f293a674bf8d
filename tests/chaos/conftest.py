"""Fixtures of the chaos suite: the fake upstream on a real loopback socket, one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..fakes import FakeUpstream, ThreadedServer


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeUpstream, str]]:
    upstream = FakeUpstream()
    with ThreadedServer(upstream.app) as url:
        yield upstream, url
