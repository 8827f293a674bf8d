"""The `deja` command: `deja serve` starts the proxy (settings from the config file, then flags); `deja import`
loads a JSONL of question/answer pairs into a data dir (with no `deja serve` running on it); the admin commands
(`deja stats|entries|delete|purge|export`) live in admin_cli.py."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

import uvicorn

from .admin_cli import COMMANDS as ADMIN_COMMANDS
from .admin_cli import add_admin_commands, run_admin_command
from .errors import ConfigError
from .settings import ADMIN_TOKEN_ENV, WORKER_SETTINGS_ENV, Settings, load_settings

log = logging.getLogger("deja")
# A worker of `--workers N` loads the embedding model and connects to the store before it is ready.
WORKER_START_SECONDS = 120.0
# Where a browser on this machine reaches a server bound to every address (browsers refuse 0.0.0.0 itself).
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}


class DejaServer(uvicorn.Server):
    """uvicorn, but SIGTERM/SIGINT end in exit 0 once shutdown (with write-back draining) is done: uvicorn's own
    handler re-raises the signal after its graceful shutdown, which would make the exit status -15. Shutdown is
    bounded: in-flight requests get part of `shutdown_timeout` (uvicorn then cancels them), the write-back drain
    another (services.py), and once it has passed the process exits 0 whatever still runs: a thread stuck in
    native code, or a task that does not end when cancelled, can be stopped no other way."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __init__(self, config: uvicorn.Config, settings: Settings | None = None,
                 shutdown_timeout: float = 30.0) -> None:
        super().__init__(config)
        self.settings = settings  # None in the workers of `--workers N`: the supervisor prints the ready lines
        self.shutdown_timeout = shutdown_timeout
        self._watchdog: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.shutdown_timeout, self._exit_now)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _exit_now(self) -> None:
        log.error("shutdown took longer than shutdown_timeout (%.0f s): exiting now", self.shutdown_timeout)
        logging.shutdown()
        os._exit(0)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.settings is not None:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(ready_lines(self.settings, host, port), flush=True)


def ready_lines(settings: Settings, host: str, port: int, workers: int = 1) -> str:
    """What `deja serve` prints once it serves: where, in front of what, on which store, and the dashboard (a link
    a browser on this machine opens: loopback for a wildcard address, the token escaped for the page to decode)."""
    from .services import describe_store

    local = f"http://{url_host(LOOPBACK.get(host, host))}:{port}"
    token = settings.admin_token
    dashboard = (f"{local}/dashboard#token={quote(token, safe='')}" if token
                 else f"off (set {ADMIN_TOKEN_ENV} to enable /admin and {local}/dashboard)")
    several = f" ({workers} workers)" if workers > 1 else ""
    return "\n".join([f"deja listening on http://{url_host(host)}:{port}{several}",
                      f"  upstream   {settings.upstream}", f"  store      {describe_store(settings)}",
                      f"  dashboard  {dashboard}"])


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(settings: Settings, workers: int = 1) -> int:
    from .app import create_app
    from .policies import load_policies
    from .stores import store_kind

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upstream call is noise
    if workers < 1:
        raise ConfigError(f"--workers: expected 1 or more, got {workers}")
    if workers > 1 and store_kind(settings.store.url) == "sqlite":
        raise ConfigError("--workers needs the shared PostgreSQL store (--store postgresql://…): the embedded store "
                          "belongs to one process")
    policies = load_policies(settings.policies_dir)  # a bad policy stops start-up before anything listens
    failure = check_store(settings)
    if failure is not None:
        print(f"deja: {failure}", file=sys.stderr)
        return 1
    if workers > 1:
        return serve_workers(settings, workers)
    config = uvicorn.Config(create_app(settings, policies=policies), host=settings.host, port=settings.port,
                            log_level=settings.log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=request_grace(settings),
                            h11_max_incomplete_event_size=settings.max_header_bytes)
    server = DejaServer(config, settings, settings.shutdown_timeout)
    server.run()
    return 0 if server.started else 1


def request_grace(settings: Settings) -> int:
    """The seconds uvicorn lets in-flight requests run after SIGTERM (it takes whole seconds)."""
    from .services import REQUEST_SHARE

    return max(1, int(settings.shutdown_timeout * REQUEST_SHARE))


def serve_workers(settings: Settings, workers: int) -> int:
    """N worker processes on one socket (uvicorn's supervisor restarts a worker that dies); each builds the app
    from the settings passed in the environment."""
    from uvicorn.supervisors import Multiprocess

    class Workers(Multiprocess):
        def init_processes(self) -> None:
            super().init_processes()
            if all(p.wait_until_ready(WORKER_START_SECONDS, self.should_exit) for p in self.processes):
                print(ready_lines(settings, host, port, workers), flush=True)

    os.environ[WORKER_SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    config = uvicorn.Config("proxy.app:worker_app", factory=True, host=settings.host, port=settings.port,
                            workers=workers, log_level=settings.log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=request_grace(settings))
    sock = listening_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    Workers(config, sockets=[sock]).run()
    return 0


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket the workers share. Made with proto=IPPROTO_TCP (uvicorn's bind_socket leaves 0): asyncio sets
    TCP_NODELAY only on sockets that say TCP, and without it every response waits ~40 ms for a delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def check_store(settings: Settings) -> str | None:
    """Why the store cannot be opened (one line), or None; with store.fail_open the proxy starts regardless."""
    from .stores import probe_store
    from .stores.base import StoreStartError

    try:
        asyncio.run(probe_store(settings.store, Path(settings.data_dir)))
    except StoreStartError as exc:
        if not settings.store.fail_open:
            return str(exc)
    return None


def evaluate(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from . import evaluate as ev
    from .embeddings import load_embedder
    from .multilingual import load_multilingual
    from .policies import load_policies

    settings = load_settings(args.config, data_dir=args.data_dir)
    policy = load_policies(args.policies_dir).policy_for(args.model)
    if args.threshold is not None:
        policy = dataclasses.replace(policy, threshold=args.threshold)
    if args.long_threshold is not None:
        policy = dataclasses.replace(policy, long_threshold=args.long_threshold)
    if args.multilingual_threshold is not None:
        policy = dataclasses.replace(policy, multilingual_threshold=args.multilingual_threshold)
    fields = ev.Fields(args.a_field, args.b_field, args.label_field, args.category_field, args.id_field)
    low, high, step = (float(x) for x in args.sweep.split(":"))
    thresholds = ev.thresholds_between(low, high, step)
    pairs: list[ev.Pair] = []
    for file in args.files:
        pairs += ev.read_pairs(Path(file), fields, args.split)
    embedder = load_embedder(settings.embedding, Path(settings.data_dir))
    # Look up as low as the sweep or the policy goes: below the floor nothing is ever served.
    floor = min(*thresholds, policy.threshold, policy.long_threshold, policy.multilingual_threshold)
    outcomes = asyncio.run(ev.run_eval(pairs, embedder, policy, mode=args.mode, floor=floor,
                                       model=args.model, progress=not args.json,
                                       extra_embedders=load_multilingual(settings.embedding)))
    name = ev.files_title(args.files) + ("" if args.split == "all" else f" ({args.split} half)")
    if args.json:
        print(json.dumps(ev.report_json(outcomes, policy, thresholds), indent=1))
    else:
        print("\n".join(ev.report_lines(name, outcomes, policy, thresholds, args.mode)))
        if args.explain:
            print("\n".join(ev.explain_lines(outcomes, policy)))
    if args.plot:
        ev.plot(outcomes, policy, thresholds, Path(args.plot), name)
    return 0


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
    p.add_argument("--store", help="sqlite: (the embedded store in --data-dir) or postgresql://user@host/db, "
                   "shared by replicas (also DEJA_STORE_URL)")
    p.add_argument("--workers", type=int, default=1, help="processes on one port (the PostgreSQL store only)")
    p = commands.add_parser("import", help="load a JSONL of question/answer pairs (or a deja export) into the cache")
    p.add_argument("file", help="JSONL file: {question|messages, answer|response, model?, namespace?, params?}")
    p.add_argument("--config", help="YAML settings file (see config.example.yaml)")
    p.add_argument("--data-dir", help="where the SQLite file and vector indexes live")
    p.add_argument("--policies", dest="policies_dir", help="folder of policy YAML files")
    p.add_argument("--store", help="the store to import into (as for deja serve; also DEJA_STORE_URL)")
    p.add_argument("--model", help="model for lines that name none")
    p.add_argument("--namespace", help="X-Cache-Namespace for lines that name none")
    p.add_argument("--url", help="import through a running proxy's admin API (needs DEJA_ADMIN_TOKEN) instead of "
                   "into --data-dir")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the tenant's API key "
                     "(question/answer lines need it or --shared; export lines name their tenant)")
    who.add_argument("--shared", action="store_true", help="entries shared across API keys")

    e = commands.add_parser("eval", help="measure hits and wrong hits on labelled pairs (JSONL or a JSON list)")
    e.add_argument("files", nargs="+", metavar="FILE")
    e.add_argument("--mode", choices=["pairs", "corpus"], default="pairs",
                   help="pairs: each pair alone; corpus: all `a` stored together, each `b` asked")
    e.add_argument("--split", choices=["all", "tune", "holdout"], default="all",
                   help="a stable half of the rows, by sha256 of their id")
    e.add_argument("--a-field", default="a", help="the stored side (default: a)")
    e.add_argument("--b-field", default="b", help="the asked side (default: b)")
    e.add_argument("--label-field", default="same_answer", help="true when one answer serves both (default: "
                   "same_answer; rows without it count as true)")
    e.add_argument("--category-field", default="category")
    e.add_argument("--id-field", default="id")
    e.add_argument("--model", default="gpt-4o-mini", help="the model whose policy applies")
    e.add_argument("--policies", dest="policies_dir")
    e.add_argument("--threshold", type=float, help="override the policy's threshold")
    e.add_argument("--long-threshold", type=float, help="override the policy's long_threshold")
    e.add_argument("--multilingual-threshold", type=float, help="override the policy's multilingual_threshold")
    e.add_argument("--sweep", default="0.80:0.99:0.01", help="LOW:HIGH:STEP thresholds for the sweep table")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.add_argument("--explain", action="store_true", help="list each wrong decision (served trap, missed "
                   "rewording) with its similarity and the guard rule or threshold that decided it")
    e.add_argument("--plot", help="write served-vs-traps curves to this PNG (needs matplotlib)")
    e.add_argument("--config")
    e.add_argument("--data-dir", help="where the embedding model is prepared (default: the config's)")

    add_admin_commands(commands)
    return parser


def run_import(args: argparse.Namespace) -> int:
    from .admin_cli import remote_import
    from .importer import ImportReport, import_lines, progress_bar, read_lines, show_report
    from .policies import load_policies
    from .services import Services

    settings = load_settings(args.config, data_dir=args.data_dir, policies_dir=args.policies_dir,
                             store_url=args.store)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        raise ConfigError(f"--api-key-env: the environment variable {args.api_key_env} is not set")
    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    if args.url:
        report = remote_import(args.url, path, key, shared=args.shared, model=args.model, namespace=args.namespace)
    else:
        logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
        policies = load_policies(settings.policies_dir)

        async def run() -> ImportReport:
            services = await Services.open(settings, policies=policies)
            bar = progress_bar(path.stat().st_size)
            try:
                return await import_lines(services.cache, policies, read_lines(path, bar), tenant_key=key,
                                          shared=args.shared, model=args.model, namespace=args.namespace,
                                          progress=lambda report: show_report(bar, report))
            finally:
                bar.close()
                await services.close()

        report = asyncio.run(run())
    print(f"{report.imported} imported, {report.skipped} skipped, {report.failed} failed "
          f"of {report.lines} lines", file=sys.stderr)
    for error in report.errors:
        print(f"  {error}", file=sys.stderr)
    return 0 if report.failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ADMIN_COMMANDS:
        return run_admin_command(args)
    try:
        if args.command == "serve":
            settings = load_settings(args.config, host=args.host, port=args.port, upstream=args.upstream,
                                     data_dir=args.data_dir, policies_dir=args.policies_dir, store_url=args.store)
            return serve(settings, args.workers)
        if args.command == "import":
            return run_import(args)
        return evaluate(args)  # argparse admits no other command
    except ConfigError as exc:
        print(f"deja: {exc}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
