"""The `deja` command: `deja serve` starts the proxy (settings from the config file, then flags);
`deja import` loads a JSONL of question/answer pairs into a data dir (with no `deja serve` running on it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from .errors import ConfigError
from .settings import Settings, load_settings

log = logging.getLogger("deja")


class DejaServer(uvicorn.Server):
    """uvicorn, but SIGTERM/SIGINT end in exit 0 once shutdown (with write-back draining) is done: uvicorn's own
    handler re-raises the signal after its graceful shutdown, which would make the exit status -15."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"deja listening on http://{host}:{port}", flush=True)


def serve(settings: Settings) -> int:
    from .app import create_app
    from .policies import load_policies

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    policies = load_policies(settings.policies_dir)  # a bad policy stops start-up before anything listens
    config = uvicorn.Config(create_app(settings, policies=policies), host=settings.host, port=settings.port,
                            log_level=settings.log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=30)
    server = DejaServer(config)
    server.run()
    return 0 if server.started else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deja", description="OpenAI-compatible proxy with a semantic cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve", help="start the proxy")
    p.add_argument("--config", help="YAML settings file (see config.example.yaml)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--upstream", help="OpenAI-compatible base URL including /v1")
    p.add_argument("--data-dir", help="where the SQLite file and vector indexes live")
    p.add_argument("--policies", dest="policies_dir", help="folder of policy YAML files")
    p = commands.add_parser("import", help="load a JSONL of question/answer pairs (or a deja export) into the cache")
    p.add_argument("file", help="JSONL file: {question|messages, answer|response, model?, namespace?, params?}")
    p.add_argument("--config", help="YAML settings file (see config.example.yaml)")
    p.add_argument("--data-dir", help="where the SQLite file and vector indexes live")
    p.add_argument("--policies", dest="policies_dir", help="folder of policy YAML files")
    p.add_argument("--model", help="model for lines that name none")
    p.add_argument("--namespace", help="X-Cache-Namespace for lines that name none")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the tenant's API key")
    who.add_argument("--shared", action="store_true", help="entries shared across API keys")
    return parser


def run_import(args: argparse.Namespace) -> int:
    from .importer import ProgressBar, import_lines, read_lines
    from .policies import load_policies
    from .services import Services

    settings = load_settings(args.config, data_dir=args.data_dir, policies_dir=args.policies_dir)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        raise ConfigError(f"--api-key-env: the environment variable {args.api_key_env} is not set")
    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    policies = load_policies(settings.policies_dir)

    async def run() -> int:
        services = await Services.open(settings, policies=policies)
        bar = ProgressBar(path.stat().st_size)
        try:
            report = await import_lines(services.cache, policies, read_lines(path, bar), tenant_key=key,
                                        shared=args.shared, model=args.model, namespace=args.namespace,
                                        progress=bar)
        finally:
            await services.close()
        print(f"\n{report.imported} imported, {report.skipped} skipped, {report.failed} failed "
              f"of {report.lines} lines", file=sys.stderr)
        for error in report.errors:
            print(f"  {error}", file=sys.stderr)
        return 0 if report.failed == 0 else 1

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = load_settings(args.config, host=args.host, port=args.port, upstream=args.upstream,
                                     data_dir=args.data_dir, policies_dir=args.policies_dir)
            return serve(settings)
        if args.command == "import":
            return run_import(args)
    except ConfigError as exc:
        print(f"deja: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
