"""`deja stats|entries|delete|purge|export`: the admin API from the command line.

Against a running proxy (`--url`, default http://127.0.0.1:8080, token from DEJA_ADMIN_TOKEN) or straight on the
store, named as `deja serve` takes it (`--store`, DEJA_STORE_URL, or `store.url` and `data_dir` in `--config`):
- the embedded store in a data directory (`--data-dir`), for a stopped proxy: deletions there change SQLite only,
  and the next `deja serve` sees its index files disagree with the store and rebuilds them from the stored vectors;
- PostgreSQL (`--store postgresql://…`), with replicas running or not: deletions are announced to them as their
  own are, so none keeps serving a deleted entry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx
from tqdm import tqdm

from .errors import ConfigError
from .importer import ImportReport, progress_bar
from .listing import DEFAULT_LIMIT, parse_filter, summary
from .settings import ADMIN_TOKEN_ENV, Settings, load_settings
from .stores import store_kind
from .stores.base import EntryFilter, StoreStartError, export_line
from .stores.sqlite import RecordStore

if TYPE_CHECKING:
    from .stores.postgres import PostgresStore

    Records = RecordStore | PostgresStore

COMMANDS = ("stats", "entries", "delete", "purge", "export")
DEFAULT_URL = "http://127.0.0.1:8080"


class CommandError(Exception):
    pass


def progress(label: str, total: int | None) -> tqdm[Any]:
    return tqdm(total=total, desc=label, unit="entry", file=sys.stderr)


def add_admin_commands(commands: Any) -> None:
    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help=f"a running proxy (default {DEFAULT_URL}; token from {ADMIN_TOKEN_ENV})")
        p.add_argument("--data-dir", help="a stopped proxy's data directory, read and changed directly")
        p.add_argument("--store", help="the store to read and change directly, as for deja serve: sqlite: (the "
                       "one in --data-dir) or postgresql://… (also DEJA_STORE_URL)")
        p.add_argument("--config", help="YAML settings file: its store.url and data_dir name the store")

    def filters(p: argparse.ArgumentParser, search: bool = True) -> None:
        p.add_argument("--model")
        p.add_argument("--namespace", help='"" is the default namespace')
        p.add_argument("--tenant", help="tenant hash, as /admin/entries shows it")
        if search:
            p.add_argument("--search", "-q", dest="q", help="text in the question or earlier turns")
        p.add_argument("--older-than", type=float, metavar="SECONDS", help="stored more than SECONDS ago")

    p = commands.add_parser("stats", help="hit rate, savings, entries (JSON)")
    target(p)
    p = commands.add_parser("entries", help="list entries, newest first")
    target(p)
    filters(p)
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = commands.add_parser("delete", help="delete entries by id")
    target(p)
    p.add_argument("ids", nargs="+", type=int)
    p = commands.add_parser("purge", help="delete every entry matching the filters")
    target(p)
    filters(p, search=False)
    p.add_argument("--all", action="store_true", help="every entry (no filter)")
    p = commands.add_parser("export", help="entries as JSONL (the import format)")
    target(p)
    filters(p)
    p.add_argument("--output", "-o", help="file to write (default: stdout)")


def filter_values(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("model", "namespace", "tenant", "q", "older_than")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


# -- against a running proxy ------------------------------------------------------------------------------------


class RemoteAdmin:
    def __init__(self, url: str) -> None:
        token = os.environ.get(ADMIN_TOKEN_ENV)
        if not token:
            raise CommandError(f"{ADMIN_TOKEN_ENV} must be set to use the admin API of {url}")
        self.client = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                   timeout=60, trust_env=False)

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise CommandError(f"{response.request.method} {response.request.url.path}: "
                               f"{response.status_code} {message}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        return dict(self._check(self.client.get("/admin/stats")))

    def entries(self, values: dict[str, Any], limit: int, offset: int) -> dict[str, Any]:
        return dict(self._check(self.client.get("/admin/entries", params={**values, "limit": limit,
                                                                           "offset": offset})))

    def delete(self, ids: list[int]) -> int:
        deleted = 0
        with progress("deleting", len(ids)) as bar:
            for entry_id in ids:
                response = self.client.delete(f"/admin/entries/{entry_id}")
                if response.status_code == 404:
                    bar.write(f"deja: no entry {entry_id}", file=sys.stderr)
                else:
                    self._check(response)
                    deleted += 1
                bar.update()
        return deleted

    def purge(self, values: dict[str, Any]) -> int:
        return int(self._check(self.client.post("/admin/purge", json=values))["purged"])

    def export(self, values: dict[str, Any], out: TextIO) -> int:
        with self.client.stream("GET", "/admin/export", params=values) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            with progress("exporting", int(response.headers.get("x-total-count", 0)) or None) as bar:
                for line in response.iter_lines():
                    if line:
                        out.write(line + "\n")
                        bar.update()
        return int(bar.n)


def remote_import(url: str, path: Path, api_key: str | None, *, shared: bool, model: str | None,
                  namespace: str | None) -> ImportReport:
    """Stream `path` to a running proxy's POST /admin/import, with a progress bar by bytes sent."""
    admin = RemoteAdmin(url)
    bar = progress_bar(path.stat().st_size)

    def body() -> Iterator[bytes]:
        with path.open("rb") as f:
            while block := f.read(1 << 16):
                bar.update(len(block))
                yield block
        bar.close()

    params = {k: v for k, v in {"shared": "true" if shared else None, "model": model,
                                "namespace": namespace}.items() if v}
    headers = {"X-Import-Api-Key": api_key} if api_key else {}
    result = admin._check(admin.client.post("/admin/import", content=body(), params=params, headers=headers,
                                            timeout=None))
    return ImportReport(lines=result["lines"], imported=result["imported"], skipped=result["skipped"],
                        failed=result["failed"], errors=list(result["errors"]))


# -- straight on a data directory -------------------------------------------------------------------------------


class LocalAdmin:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.store.url
        self.path = Path(settings.data_dir) / "deja.sqlite3"
        if store_kind(self.url) == "sqlite" and not self.path.exists():
            raise CommandError(f"{self.path} does not exist: is {settings.data_dir} a Deja data directory?")

    async def _with_store(self, work: Any) -> Any:
        if store_kind(self.url) == "sqlite":
            records = RecordStore(self.path)
            await records.open()
            try:
                return await work(records)
            finally:
                await records.close()
        from .stores.postgres import DB_ERRORS, PostgresStore

        assert self.url is not None
        store = PostgresStore(self.url, "", 0)
        try:
            await store.open_records()
            return await work(store)
        except StoreStartError as exc:
            raise CommandError(str(exc)) from exc
        except DB_ERRORS as exc:
            raise CommandError(f"PostgreSQL store {store.location}: {exc}") from exc
        finally:
            await store.close()

    def _filter(self, values: dict[str, Any]) -> EntryFilter:
        from .errors import DejaError

        try:
            return parse_filter(values, ("model", "namespace", "tenant", "q", "older_than"), time.time())
        except DejaError as exc:
            raise CommandError(exc.message) from exc

    def stats(self) -> dict[str, Any]:
        async def work(store: Records) -> dict[str, Any]:
            models = await store.model_totals()
            return {"entries": sum(n for _, n, _ in models), "entry_hits": sum(h for _, _, h in models),
                    "partitions": len(await store.partition_counts()),
                    "models": [{"model": m, "entries": n, "hits": h} for m, n, h in models],
                    "top_entries": [summary(r) for r in await store.top_entries(10)]}
        return dict(asyncio.run(self._with_store(work)))

    def entries(self, values: dict[str, Any], limit: int, offset: int) -> dict[str, Any]:
        selection = self._filter(values)

        async def work(store: Records) -> dict[str, Any]:
            total = await store.count_entries(selection)
            records = await store.list_entries(selection, limit, offset)
            return {"total": total, "entries": [summary(r) for r in records]}
        return dict(asyncio.run(self._with_store(work)))

    def delete(self, ids: list[int]) -> int:
        async def work(store: Records) -> int:
            if isinstance(store, RecordStore):
                return len(await store.remove_ids(ids))
            return await store.delete_ids(ids)
        return int(asyncio.run(self._with_store(work)))

    def purge(self, values: dict[str, Any]) -> int:
        everything = bool(values.pop("all", False))
        selection = self._filter(values)
        if selection.empty and not everything:
            raise CommandError("refusing to purge every entry without --all")

        async def work(store: Records) -> int:
            if isinstance(store, RecordStore):
                return len(await store.remove_matching(selection))
            return await store.delete_matching(selection)
        return int(asyncio.run(self._with_store(work)))

    def export(self, values: dict[str, Any], out: TextIO) -> int:
        selection = self._filter(values)

        async def work(store: Records) -> int:
            with progress("exporting", await store.count_entries(selection)) as bar:
                async for batch in store.iter_entries(selection):
                    for record in batch:
                        out.write(json.dumps(export_line(record), ensure_ascii=False, separators=(",", ":")) + "\n")
                    bar.update(len(batch))
            return int(bar.n)
        return int(asyncio.run(self._with_store(work)))


def entry_lines(page: dict[str, Any]) -> Iterator[str]:
    for e in page["entries"]:
        question = e["question"].replace("\n", " ")
        yield f"{e['id']:>8}  {e['hits']:>5} hits  {e['model']:<20} {question[:80]}"


def choose_admin(args: argparse.Namespace) -> RemoteAdmin | LocalAdmin:
    """A running proxy's admin API, or the store itself when any of --data-dir, --store, --config names it."""
    direct = [flag for flag, value in (("--data-dir", args.data_dir), ("--store", args.store),
                                       ("--config", args.config)) if value]
    if not direct:
        return RemoteAdmin(args.url or DEFAULT_URL)
    if args.url:
        raise CommandError(f"--url (a running proxy) and {direct[0]} (a store opened directly) exclude each other")
    return LocalAdmin(load_settings(args.config, data_dir=args.data_dir, store_url=args.store))


def run_admin_command(args: argparse.Namespace) -> int:
    try:
        admin = choose_admin(args)
        if args.command == "stats":
            print(json.dumps(admin.stats(), indent=2))
        elif args.command == "entries":
            page = admin.entries(filter_values(args), args.limit, args.offset)
            if args.json:
                for e in page["entries"]:
                    print(json.dumps(e, ensure_ascii=False))
            else:
                for line in entry_lines(page):
                    print(line)
                print(f"{len(page['entries'])} of {page['total']} entries", file=sys.stderr)
        elif args.command == "delete":
            deleted = admin.delete(args.ids)
            print(f"deleted {deleted} of {len(args.ids)} entries")
            return 0 if deleted == len(args.ids) else 1
        elif args.command == "purge":
            values = filter_values(args)
            if args.all:
                values["all"] = True
            print(f"purged {admin.purge(values)} entries")
        elif args.command == "export":
            if args.output:
                with open(args.output, "w", encoding="utf-8") as out:
                    admin.export(filter_values(args), out)
            else:
                admin.export(filter_values(args), sys.stdout)
    except CommandError as exc:
        print(f"deja: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"deja: {exc}", file=sys.stderr)
        return 2
    except httpx.TransportError as exc:
        print(f"deja: cannot reach the proxy: {exc}", file=sys.stderr)
        return 1
    return 0
