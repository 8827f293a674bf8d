"""GPTCache's own HTTP server (`gptcache_server.server.app`, FastAPI) set up like `inprocess.py`.

Endpoints used: POST /put {"prompt", "answer"} -> "successfully update the cache";
POST /get {"prompt"} -> {"prompt", "answer"} (answer null on a miss); GET / -> "hello gptcache server".
The app's own `main()` is bypassed because it hard-wires the downloading `Onnx()` embedding.
"""

import argparse
from pathlib import Path

import uvicorn
from common import init_gptcache
from gptcache_server.server import app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", required=True, type=Path, help="sqlite.db, faiss.index and the model copy")
    parser.add_argument("--threshold", type=float, default=0.8, help="GPTCache similarity_threshold")
    parser.add_argument("--access-log", action="store_true", help="uvicorn's per-request log (off: it costs latency)")
    args = parser.parse_args()

    args.data_dir.mkdir(parents=True, exist_ok=True)
    init_gptcache(args.data_dir, args.threshold)
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log)


if __name__ == "__main__":
    main()
