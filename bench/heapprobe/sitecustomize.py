"""A memory probe for `deja serve` under the soak: `PYTHONPATH=bench/heapprobe python -m bench.soak …`.

Python imports this module at start-up in every process the soak starts; in `deja serve` only, a thread then
writes one JSON line every 30 s to `$DEJA_HEAPPROBE_DIR/heap-<pid>.jsonl` (default /tmp): RSS, glibc's
`mallinfo2()` (main heap in use, free chunks, mmapped), the number of Python objects and the most common types,
and the fill of every lru_cache in `proxy`. Touching `$DEJA_HEAPPROBE_DIR/trim` makes the next sample call
`malloc_trim(0)` and record RSS before and after. bench/RESULTS.md, "Soak: what grows", was measured with it.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path

INTERVAL = 30.0
FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cache_fill() -> dict[str, int]:
    fill = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("proxy"):
            for attr, value in list(vars(module).items()):
                if callable(value) and hasattr(value, "cache_info") and value.__module__ == name:
                    fill[f"{name}.{attr}"] = value.cache_info().currsize
    return fill


def sample(libc: ctypes.CDLL, folder: Path, started: float) -> dict[str, object]:
    info = libc.mallinfo2()
    objects = gc.get_objects()
    record: dict[str, object] = {
        "seconds": round(time.monotonic() - started), "rss_mb": rss_mb(), "heap_in_use_mb": info.uordblks / 2**20,
        "heap_free_mb": info.fordblks / 2**20, "mmapped_mb": info.hblkhd / 2**20, "objects": len(objects),
        "types": dict(collections.Counter(type(o).__name__ for o in objects).most_common(25)), "caches": cache_fill()}
    del objects
    flag = folder / "trim"
    if flag.exists():
        before = rss_mb()
        libc.malloc_trim(0)
        record["trim_mb"] = [before, rss_mb()]
        flag.unlink()
    return record


def probe() -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    folder = Path(os.environ.get("DEJA_HEAPPROBE_DIR", "/tmp"))
    started = time.monotonic()
    with (folder / f"heap-{os.getpid()}.jsonl").open("w") as out:
        while True:
            time.sleep(INTERVAL)
            out.write(json.dumps(sample(libc, folder, started)) + "\n")
            out.flush()


_argv = Path("/proc/self/cmdline").read_bytes().split(b"\0")
if b"proxy" in _argv and b"serve" in _argv:
    threading.Thread(target=probe, name="deja-heapprobe", daemon=True).start()
