"""The floor: a bare Starlette endpoint returning fixed bytes (a cached answer, its headers), under the same
uvicorn settings as `deja serve`. Usage: python -m bench.floor PORT RESPONSE_JSON_FILE"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def build(body: bytes, headers: dict[str, str]) -> Starlette:
    async def answer(request: Request) -> Response:
        await request.body()
        return Response(body, media_type="application/json", headers=headers)

    return Starlette(routes=[Route("/v1/chat/completions", answer, methods=["POST"])])


def main() -> None:
    port, saved = int(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    app = build(saved["body"].encode(), saved["headers"])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"floor listening on http://127.0.0.1:{port}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
