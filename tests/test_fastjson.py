"""fastjson.dumps: orjson's bytes, and the stdlib's for what orjson refuses."""

from __future__ import annotations

import json

import pytest

from proxy.errors import BadRequestError
from proxy.fastjson import dumps
from proxy.incoming import parse_json


def test_dumps_is_compact_utf8_json_and_takes_integers_orjson_refuses():
    answer = {"content": "Grüße 世界", "n": 2**70, "f": 0.5, "none": None}
    out = dumps(answer)
    assert json.loads(out) == answer and "Grüße".encode() in out and b", " not in out
    assert dumps({"a": [1, 2]}) == b'{"a":[1,2]}'


def test_bodies_are_read_as_the_stdlib_reads_them():
    for raw in (b'{"model":"m","temperature":0.7,"n":1,"content":"Gr\\u00fc\\u00dfe","x":[-0.0,5e-324]}',
                b'{"big":123456789012345678901234567890}', b'{"t":NaN,"u":1e400}', b'{"s":"\\ud800"}',
                b'{"a":1,"a":2}'):
        assert repr(parse_json(raw)) == repr(json.loads(raw.decode()))


def test_bodies_too_deep_or_broken_are_refused_as_before():
    with pytest.raises(BadRequestError, match="max_json_depth"):
        parse_json(b"[" * 150 + b"]" * 150, 100)
    with pytest.raises(BadRequestError, match="max_json_depth"):
        parse_json(b"[" * 5000 + b"]" * 5000, 100)
    with pytest.raises(BadRequestError, match="could not parse"):
        parse_json(b'{"a":1,}')
