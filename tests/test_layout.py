"""The package's layering, read from the imports: handlers are reached only from app.py (no handler imports
another), and the cache and the stores never reach up into the request steps."""

import ast
from pathlib import Path

PROXY = Path(__file__).resolve().parents[1] / "proxy"
HANDLERS = {"proxy.routes", "proxy.azure", "proxy.admin", "proxy.modelcache", "proxy.dashboard"}
REQUEST_STEPS = {"proxy.exchange", "proxy.flow", "proxy.embeddings_api", "proxy.decide", "proxy.serve",
                 "proxy.coalesce", "proxy.forward", "proxy.outgoing", "proxy.services", "proxy.app", *HANDLERS}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROXY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every proxy module `path` imports (type-checking imports included), relative imports resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "proxy" or name.startswith("proxy.")}


MODULES = {module_name(path): imports_of(path) for path in PROXY.rglob("*.py")}


def test_the_layout_is_read_from_every_module():
    assert REQUEST_STEPS | {"proxy.cache.lookup", "proxy.cache.backlog", "proxy.stores.base"} <= MODULES.keys()
    assert "proxy.cache.semantic" in MODULES["proxy.services"]


def test_only_the_app_imports_handlers():
    importers = {name: sorted(imports & HANDLERS) for name, imports in MODULES.items()
                 if name != "proxy.app" and imports & HANDLERS}
    assert importers == {}


def test_cache_and_stores_never_import_request_steps():
    lower = {name: sorted(imports & REQUEST_STEPS) for name, imports in MODULES.items()
             if name.startswith(("proxy.cache", "proxy.stores")) and imports & REQUEST_STEPS}
    assert lower == {}
