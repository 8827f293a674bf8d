"""The `deja` command: `deja serve` starts the proxy (settings from the config file, then flags); the admin
commands (`deja stats|entries|delete|purge|export`) live in admin_cli.py."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from .admin_cli import COMMANDS as ADMIN_COMMANDS
from .admin_cli import add_admin_commands, run_admin_command
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
    add_admin_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ADMIN_COMMANDS:
        return run_admin_command(args)
    try:
        if args.command == "serve":
            settings = load_settings(args.config, host=args.host, port=args.port, upstream=args.upstream,
                                     data_dir=args.data_dir, policies_dir=args.policies_dir)
            return serve(settings)
    except ConfigError as exc:
        print(f"deja: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
