"""PriceTable: what a model's tokens cost, from the table in data/prices.yaml plus the `prices` setting."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from functools import cache
from importlib import resources

import yaml

from .memo import Memo
from .settings import ModelPrice

# Distinct model names whose price is remembered (they come from clients: bounded; past it, looked up each time).
MEMO_MODELS = 1024


@cache
def default_prices() -> dict[str, ModelPrice]:
    table = yaml.safe_load(resources.files("proxy").joinpath("data/prices.yaml").read_text(encoding="utf-8"))
    return {str(model): ModelPrice(float(p["input"]), float(p["output"])) for model, p in table.items()}


class PriceTable:
    def __init__(self, prices: Mapping[str, ModelPrice] | None = None) -> None:
        self.prices = {**default_prices(), **(prices or {})}
        self._memo: Memo[str, ModelPrice | None] = Memo(self._search, MEMO_MODELS)

    def price_for(self, model: str) -> ModelPrice | None:
        """Every hit asks: the glob search (hundreds of fnmatch calls) runs once per model name."""
        return self._memo(model)

    def _search(self, model: str) -> ModelPrice | None:
        if model in self.prices:
            return self.prices[model]
        matches = [p for p in self.prices if fnmatch.fnmatchcase(model, p)]
        if not matches:
            return None
        return self.prices[max(matches, key=lambda p: (sum(ch not in "*?[]" for ch in p), p))]

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self.price_for(model)
        if price is None:
            return None
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000
