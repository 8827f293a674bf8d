"""The semantic cache over one store: lookup.py decides hits (reading through hot.py's records in memory), writer.py
stores answers after their responses (backlog.py bounds what waits for it), maintenance.py sweeps and saves,
flights.py coalesces identical misses in this process and leases.py across replicas; semantic.py holds them
together."""

from .lookup import Hit, Lookup, Rejection
from .semantic import SemanticCache

__all__ = ["Hit", "Lookup", "Rejection", "SemanticCache"]
