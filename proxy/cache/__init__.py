"""The semantic cache over one store: lookup.py decides hits, writer.py stores answers after their responses,
maintenance.py sweeps and saves, leases.py coalesces misses across replicas, semantic.py holds them together."""

from .lookup import Hit, Lookup, Rejection
from .semantic import SemanticCache

__all__ = ["Hit", "Lookup", "Rejection", "SemanticCache"]
