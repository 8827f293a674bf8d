"""GPTCache embedding function backed by Deja's own embedder, so both caches see identical vectors.

Deja's FastEmbedder runs all-MiniLM-L6-v2 int8 from PyPI packages (no hub download), unlike GPTCache's
default `Onnx()` embedding, which fetches its model at first use.
"""

from pathlib import Path

import numpy as np

from proxy.embeddings import FastEmbedder
from proxy.settings import EmbeddingSettings

DIMENSION = 384


class DejaEmbedding:
    """`to_embeddings` has the signature GPTCache's `Cache.init(embedding_func=...)` expects."""

    dimension = DIMENSION

    def __init__(self, data_dir: Path) -> None:
        # The verified model is laid out under <data_dir>/models, exactly as Deja does for its own data dir.
        self._embedder = FastEmbedder(EmbeddingSettings(), Path(data_dir))
        assert self._embedder.dim == DIMENSION, self._embedder.dim

    def to_embeddings(self, data: str, **_kwargs) -> np.ndarray:
        return self._embedder.embed([data])[0]
