"""The package layout holds: no import circles, imports go one way, and the public surface is pinned.

The rooms and what each may import are the README's Layout table (decision 0010). The walk reads
every module's source with ``ast`` (nothing is imported), so a new module is covered the moment it
exists. Imports under ``if TYPE_CHECKING:`` are annotations only and are not edges.
"""

from __future__ import annotations

import ast
import json
import tomllib
from pathlib import Path

import click
import duckdb
import pytest

import modelog
from modelog.cli.main import cli
from modelog.wire import settings as settings_module

ROOT = Path(__file__).resolve().parents[2]
SURFACE = Path(__file__).resolve().parent / "surface"

# room -> the rooms it may import (besides itself). "version" is modelog._version, importable by all.
MAY_IMPORT: dict[str, set[str]] = {
    "schemas": set(),
    "wire": {"schemas"},
    "drift": {"wire"},
    "local": {"wire"},
    "processors": {"wire", "drift"},
    "consumers": {"wire", "processors"},
    "sdk": {"wire", "drift", "consumers"},
    "server": {"wire", "drift", "consumers", "sdk"},
    "integrations": {"wire", "consumers", "sdk"},
    "cli": {"wire", "drift", "local", "consumers", "sdk", "server", "integrations", "processors"},
    "root": {"wire", "consumers", "sdk", "cli", "integrations"},  # integrations: modelog.autolog
}
# rooms that only the body of a command may reach (a lazy import), never a module's top level
LAZY_ONLY: dict[str, set[str]] = {"cli": {"processors"}}


def room_of(module: str) -> str:
    parts = module.split(".")
    if module == "modelog._version":
        return "version"
    if len(parts) == 1 or parts[1] in ("__main__",):
        return "root"
    if parts[1] == "demos":  # what `modelog demo` runs: part of the command line
        return "cli"
    return parts[1]


def modules() -> dict[str, Path]:
    """Every module of the modelog namespace -> its file, from pyproject's package-dir mapping."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    out = {}
    for package, folder in package_dir.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, bool, int]]:
    """(imported modelog module, lazy, line) for every import in ``path``; lazy = inside a function."""
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    found: list[tuple[str, bool, int]] = []

    def target(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, lazy)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("modelog"):
                        t = target(alias.name)
                        if t:
                            found.append((t, lazy, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                if not source.startswith("modelog"):
                    continue
                for alias in child.names:
                    t = target(f"{source}.{alias.name}") if f"{source}.{alias.name}" in known else target(source)
                    if t:
                        found.append((t, lazy, child.lineno))
            visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def graph() -> dict[str, list[tuple[str, bool, int]]]:
    mods = modules()
    known = set(mods)
    return {m: [e for e in imports(m, p, known) if e[0] != m] for m, p in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def direction_violations(g: dict[str, list[tuple[str, bool, int]]]) -> list[str]:
    bad = []
    for module, edges in g.items():
        src = room_of(module)
        for target, lazy, line in edges:
            dst = room_of(target)
            if dst in (src, "version"):
                continue
            if dst not in MAY_IMPORT.get(src, set()):
                bad.append(f"{module}:{line} imports {target} ({src} may not import {dst})")
            elif dst in LAZY_ONLY.get(src, set()) and not lazy:
                bad.append(f"{module}:{line} imports {target} at module level ({src} reaches {dst} only inside "
                           "a command)")
    return bad


# -- the layout ---------------------------------------------------------------------------------

def test_the_walk_sees_every_room_and_their_imports():
    g = graph()
    rooms = {room_of(m) for m in g}
    assert rooms >= {"root", "version", "schemas", "wire", "sdk", "processors", "consumers", "drift", "local", "cli",
                     "server", "integrations"}
    assert ("modelog.wire.settings", False) in {(t, lazy) for t, lazy, _ in g["modelog.sdk.client"]}
    assert ("modelog.processors.app", True) in {(t, lazy) for t, lazy, _ in g["modelog.cli.process"]}
    # relative imports resolve too (processors use them)
    assert "modelog.processors.rows" in {t for t, _, _ in g["modelog.processors.lineage"]}


def test_no_import_circles():
    g = graph()
    found = cycles({m: {t for t, _, _ in edges} for m, edges in g.items()})
    assert not found, f"import circles: {found}"


def test_imports_go_one_way():
    assert direction_violations(graph()) == []


def test_the_checks_catch_a_circle_and_a_wrong_direction():
    """The two checks above fail on what they guard against (a test that cannot fail is a defect)."""
    g = graph()
    edges = {m: {t for t, _, _ in e} for m, e in g.items()}
    edges["modelog.wire.settings"].add("modelog.wire.home")  # home already reads settings' type only...
    edges["modelog.wire.home"] = edges.get("modelog.wire.home", set()) | {"modelog.wire.settings"}
    assert ["modelog.wire.home", "modelog.wire.settings"] in cycles(edges)
    g["modelog.processors.app"].append(("modelog.cli.main", True, 1))
    g["modelog.cli.main"].append(("modelog.processors.app", False, 2))
    bad = direction_violations(g)
    assert any("processors may not import cli" in b for b in bad)
    assert any("at module level" in b for b in bad)


# -- the public surface -------------------------------------------------------------------------

def _pinned(name: str):
    return json.loads((SURFACE / name).read_text())


def _diff(pinned, actual) -> str:
    pinned, actual = set(pinned), set(actual)
    return f"dropped: {sorted(pinned - actual)}; new (pin them in tests/unit/surface/): {sorted(actual - pinned)}"


def test_modelog_all_is_sorted_pinned_and_importable():
    assert modelog.__all__ == sorted(modelog.__all__)
    pinned = _pinned("modelog_all.json")
    assert modelog.__all__ == pinned, _diff(pinned, modelog.__all__)
    for name in modelog.__all__:
        assert getattr(modelog, name) is not None
    assert callable(modelog.drift.compare)  # the lazily imported submodule


def cli_tree(cmd: click.Command, path: tuple[str, ...] = ("modelog",)) -> dict[str, list[str]]:
    """Every command path -> its parameters (options with every spelling; arguments by name)."""
    params = []
    for p in cmd.params:
        if isinstance(p, click.Option):
            kind = "flag" if p.is_flag else "option"
            params.append(f"{kind} {'/'.join(sorted(p.opts + p.secondary_opts))}" + (" (multiple)" if p.multiple else ""))
        else:
            params.append(f"argument {p.name}")
    out = {" ".join(path): sorted(params)}
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            out.update(cli_tree(sub, path + (name,)))
    return out


def test_cli_command_tree_is_pinned():
    tree = cli_tree(cli)
    pinned = _pinned("cli.json")
    assert set(tree) == set(pinned), _diff(pinned, tree)
    for command, params in pinned.items():
        assert tree[command] == params, f"{command}: {_diff(params, tree[command])}"


def test_settings_variables_are_pinned():
    names = sorted(settings_module._ENV)
    pinned = _pinned("settings.json")
    assert names == pinned, _diff(pinned, names)


def test_views_and_columns_are_pinned(tmp_path):
    from modelog.processors.store import ViewStore

    store = ViewStore(tmp_path / "views.duckdb")
    store.close()
    con = duckdb.connect(str(tmp_path / "views.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT table_name, column_name FROM information_schema.columns "
                           "WHERE table_schema = 'main' AND table_name IN (SELECT view_name FROM duckdb_views() "
                           "WHERE NOT internal) ORDER BY table_name, ordinal_position").fetchall()
    finally:
        con.close()
    views: dict[str, list[str]] = {}
    for table, column in rows:
        views.setdefault(table, []).append(column)
    pinned = _pinned("views.json")
    assert set(views) == set(pinned), _diff(pinned, views)
    for view, columns in pinned.items():
        assert views[view] == columns, f"{view}: {_diff(columns, views[view])}"


@pytest.mark.parametrize("pin", ["modelog_all.json", "cli.json", "settings.json", "views.json"])
def test_pins_are_not_empty(pin):
    assert len(_pinned(pin)) > 3
