"""No import runs up the layers: every import of spacemind_cli/ and pipelines/ (at the top of a
module or inside a function) points at its own layer or one below. The table is stated here once;
the README's "How it is built" states the same order (checked below)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("spacemind_cli", "pipelines")

# Top first. A module belongs to the row with a prefix it starts with; the ways in (the CLI, the
# package root and api.py that are the library's API, the lmms-eval plugin) share the top row, and
# modules of no row are the core: the top-level modules spacemind_cli/*.py.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("spacemind_cli.cli", "spacemind_cli.__main__", "spacemind_cli", "spacemind_cli.api",
             "spacemind_cli.integrations")),
    ("pipelines", ("pipelines",)),
    ("jobs", ("spacemind_cli.jobs",)),
    ("library", ("spacemind_cli.training", "spacemind_cli.report", "spacemind_cli.eval", "spacemind_cli.cache",
                 "spacemind_cli.models")),
    ("core", ()),
]
# Within the library layer, these depend only on the core (and themselves).
CORE_ONLY = ("spacemind_cli.models", "spacemind_cli.cache", "spacemind_cli.eval")
# Third-party packages a package must not import.
FORBIDDEN = {"spacemind_cli.models": ("ray", "typer")}

# Known exceptions, each (importer, imported) with why and who removes it. Nothing is allowed
# silently: an exception no longer taken fails the test below, so the list only shrinks.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _is_module(name: str, modules: dict[str, Path]) -> bool:
    return name in modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) of every import in the file, relative ones resolved; `from pkg
    import name` counts as pkg.name when that is a module, else as pkg."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[tuple[str, int], None] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(dict.fromkeys((alias.name, node.lineno) for alias in node.names))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found[(sub if _is_module(sub, modules) else target, node.lineno)] = None
    return list(found)


def _layer(name: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or (p != "spacemind_cli" and name.startswith(p + ".")) for p in prefixes):
            return rank
    return len(LAYERS) - 1


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations() -> tuple[list[str], set[tuple[str, str]]]:
    modules = _modules()
    found, excepted = [], set()
    for name, path in modules.items():
        where = path.relative_to(REPO)
        for target, line in _imports(name, path, modules):
            for pkg, banned in FORBIDDEN.items():
                if _under(name, pkg) and target.split(".")[0] in banned:
                    found.append(f"{where}:{line}: {pkg} imports {target}")
            if target.split(".")[0] not in PACKAGES:
                continue
            up = _layer(target) < _layer(name)
            own = next((p for p in CORE_ONLY if _under(name, p)), None)
            sideways = own is not None and _layer(target) == _layer(name) and not _under(target, own)
            if not (up or sideways):
                continue
            if (name, target) in KNOWN_EXCEPTIONS:
                excepted.add((name, target))
                continue
            what = "up" if up else "sideways"
            found.append(f"{where}:{line}: {name} ({LAYERS[_layer(name)][0]}) imports {target} "
                         f"({LAYERS[_layer(target)][0]}), {what} the layers")
    return found, excepted


def test_no_import_runs_up_the_layers():
    found, _ = violations()
    assert not found, "\n".join(found)


def test_known_exceptions_are_still_needed():
    _, excepted = violations()
    stale = KNOWN_EXCEPTIONS - excepted
    assert not stale, f"no longer imported, remove from KNOWN_EXCEPTIONS: {sorted(stale)}"


def test_every_module_has_a_layer_and_the_core_is_the_top_level():
    for name in _modules():
        if _layer(name) == len(LAYERS) - 1:
            assert name.count(".") == 1 and name.startswith("spacemind_cli."), name


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    """The check itself: an import hidden in a function body of a core module is caught."""
    modules = _modules()
    path = tmp_path / "fake.py"
    path.write_text("def f():\n    from .jobs import settings\n    from .models import vggt\n")
    imported = [t for t, _ in _imports("spacemind_cli.fake", path, modules)]
    assert imported == ["spacemind_cli.jobs.settings", "spacemind_cli.models.vggt"]
    assert _layer("spacemind_cli.fake") > _layer("spacemind_cli.jobs.settings") > _layer("spacemind_cli.cli.main")
    assert _layer("spacemind_cli") == _layer("spacemind_cli.cli.main")


def test_readme_states_the_same_layers():
    library = ", ".join(p.rpartition(".")[2] for p in LAYERS[3][1])
    line = "**" + " → ".join(n if n != "library" else f"library ({library})" for n, _ in LAYERS) + "**"
    assert line in (REPO / "README.md").read_text(encoding="utf-8"), line
