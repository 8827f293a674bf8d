"""fastjson.dumps: orjson's bytes, and the stdlib's for what orjson refuses."""

from __future__ import annotations

import json

from proxy.fastjson import dumps


def test_dumps_is_compact_utf8_json_and_takes_integers_orjson_refuses():
    answer = {"content": "Grüße 世界", "n": 2**70, "f": 0.5, "none": None}
    out = dumps(answer)
    assert json.loads(out) == answer and "Grüße".encode() in out and b", " not in out
    assert dumps({"a": [1, 2]}) == b'{"a":[1,2]}'
