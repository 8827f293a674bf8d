"""Load through wrk (Debian's `wrk`, one thread, keep-alive connections): a Lua script per workload that picks
the request bodies, counts X-Cache-Status/X-Cache-Match per response, and prints wrk's own latency percentiles."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .workload import API_KEY, MISS_MODEL

LUA_REPORT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
  local k = (headers["x-cache-status"] or ("http" .. status)) .. (headers["x-cache-match"] or "")
  counts[k] = (counts[k] or 0) + 1
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do io.write("STATUS ", k, " ", v, "\n") end
  end
end
"""

MISS_WORDS = ("amber quartz violin harbor cactus meteor lantern walrus saffron glacier tundra mosaic pepper orbit "
              "falcon nectar basalt origami kelp zephyr bramble cobalt dune ember fjord gizmo hollow iris jasper "
              "kiln lilac mango nimbus opal prism quill raven sorrel tulip umber vortex willow yarrow zinnia").split()


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


# Every workload posts JSON as the bench's tenant.
LUA_HEADER = f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {API_KEY}"
"""


def fixed_bodies_script(bodies: list[str]) -> str:
    table = ",\n".join(_lua_string(b) for b in bodies)
    return LUA_HEADER + f"""
local bodies = {{ {table} }}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end
""" + LUA_REPORT


def unique_misses_script(seed: int) -> str:
    words = ", ".join(f'"{w}"' for w in MISS_WORDS)
    return LUA_HEADER + f"""
local words = {{ {words} }}
local i = 0
math.randomseed({seed})
request = function()
  i = i + 1
  local t = {{}}
  for k = 1, 7 do t[k] = words[math.random(#words)] end
  local text = table.concat(t, " ") .. " " .. i .. "-" .. math.random(1000000000)
  return wrk.format(nil, nil, nil,
    '{{"model":"{MISS_MODEL}","messages":[{{"role":"user","content":"' .. text .. '"}}]}}')
end
""" + LUA_REPORT


def wrk(url: str, script: str, *, connections: int, seconds: float) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
                               "-s", f.name, url], capture_output=True, text=True, timeout=seconds + 120)
    finally:
        Path(f.name).unlink()
    found = re.search(r"^RESULT (.*)$", done.stdout, re.M)
    if not found:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    result = json.loads(found.group(1))
    statuses = {m.group(1): int(m.group(2)) for m in re.finditer(r"^STATUS (\S+) (\d+)$", done.stdout, re.M)}
    return Run(result["requests"], result["duration_us"] / 1e6, result["p50_us"] / 1000, result["p99_us"] / 1000,
               result["errors"], statuses)
