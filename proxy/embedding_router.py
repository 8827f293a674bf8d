"""EmbedderRouter: each question goes to the first embedder that can read it (proxy/multilingual.py), or to none.

Each embedder is a lane with its own batcher thread and its own threshold; the store keeps each model's vectors
in indexes of their own (one per partition and model: vectors of different models are never compared). English
stays on MiniLM at its speed, Chinese goes to multilingual-e5, Amharic to no model at all (exact matching only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .batcher import EmbeddingBatcher
from .embeddings import Embedder
from .multilingual import reads
from .policies import Policy


@dataclass(eq=False)  # lanes are compared and hashed by identity
class Lane:
    embedder: Embedder
    batcher: EmbeddingBatcher
    primary: bool  # the policy's threshold applies; other lanes use its multilingual_threshold

    def threshold(self, policy: Policy, text: str) -> float:
        return policy.threshold_for(text) if self.primary else policy.multilingual_threshold


class EmbedderRouter:
    def __init__(self, embedders: Sequence[Embedder], *, max_batch: int, window: float,
                 expected: Callable[[], int]) -> None:
        self.lanes = [Lane(e, EmbeddingBatcher(e, max_batch=max_batch, window=window, expected=expected), n == 0)
                      for n, e in enumerate(embedders)]

    def lane_for(self, text: str) -> Lane | None:
        """The first lane whose model reads `text`; None: no model can, so only exact matching applies."""
        for lane in self.lanes:
            if reads(lane.embedder, text):
                return lane
        return None

    async def embed(self, texts: list[str]) -> list[tuple[np.ndarray, str] | None]:
        """Each text's (vector, embedder name) from the lane that reads it; None where no model can."""
        out: list[tuple[np.ndarray, str] | None] = [None] * len(texts)
        groups: dict[int, list[int]] = {}
        for n, text in enumerate(texts):
            lane = self.lane_for(text)
            if lane is not None:
                groups.setdefault(self.lanes.index(lane), []).append(n)
        for number, positions in groups.items():
            lane = self.lanes[number]
            vectors = await lane.batcher.embed_many([texts[n] for n in positions])
            for n, vector in zip(positions, vectors, strict=True):
                out[n] = (vector, lane.embedder.name)
        return out

    @property
    def second_opinion(self) -> Lane | None:
        """The multilingual lane, when loaded: it judges English candidates that MiniLM alone cannot settle."""
        return self.lanes[1] if len(self.lanes) > 1 else None

    def close(self) -> None:
        for lane in self.lanes:
            lane.batcher.close()
