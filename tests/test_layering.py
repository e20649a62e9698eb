"""The package layering of docs/design.md holds: every import of every module is allowed.

The tables are read from docs/design.md itself (the shared-modules line, the package table
and the module exceptions), so the document and this check cannot drift apart. Imports
are found with ``ast`` anywhere in a module: at the top, inside functions, under
``TYPE_CHECKING``; relative imports are resolved against the module's package.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "cospeech"
DESIGN = ROOT / "docs" / "design.md"
SHARED_LINE = "Shared by every package:"
NONE = "—"


@dataclass(frozen=True)
class Layering:
    """``shared``: units every module may import; ``allowed``: unit -> the units (or dotted
    modules, ``data.manifest``) it may import; ``extra``: module -> more allowed units."""

    shared: frozenset[str]
    allowed: dict[str, frozenset[str]]
    extra: dict[str, frozenset[str]]


def _names(cell: str) -> list[str]:
    """The backticked names of a table cell, without a trailing ``/`` or ``.py``."""
    return [re.sub(r"(/|\.py)$", "", name) for name in re.findall(r"`([^`]+)`", cell)]


def _rows(text: str, header: str) -> list[list[str]]:
    """The body rows (cells) of the markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def read_layering(path: Path = DESIGN) -> Layering:
    text = path.read_text()
    start = text.index(SHARED_LINE) + len(SHARED_LINE)
    shared = frozenset(_names(text[start : text.index("\n\n", start)]))
    allowed = {}
    for cells in _rows(text, "package"):
        (unit,) = _names(cells[0])
        allowed[unit] = frozenset() if cells[1] == NONE else frozenset(_names(cells[1]))
    extra = {_names(cells[0])[0]: frozenset(_names(cells[1])) for cells in _rows(text, "module")}
    return Layering(shared, allowed, extra)


def module_name(path: Path) -> str:
    """``src/cospeech/a/b.py`` -> ``cospeech.a.b``; a package's ``__init__`` -> the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    """Whether ``cospeech.a.b`` is a module or package of the source tree."""
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[str, int]]:
    """Every ``cospeech`` module the code ``source`` of ``module`` imports, with its line.
    ``from a import b`` counts as ``a.b`` when ``b`` is a module, else as ``a``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{name}.{alias.name}"
                found.append((full if _is_module(full) else name, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] == "cospeech"]


def imports_of(path: Path) -> list[tuple[str, int]]:
    return imported_modules(path.read_text(), module_name(path), path.name == "__init__.py")


def unit_of(module: str) -> str:
    """The table row a module belongs to: its top-level package or top-level module
    (``cospeech`` itself for the root package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cospeech"


def is_allowed(layering: Layering, importer: str, target: str) -> bool:
    """Whether module ``importer`` may import module ``target`` (both ``cospeech.*``): its
    own unit, the shared ones, its row's names (a package, or a module and what is in it),
    and its module exception's."""
    unit, target_unit = unit_of(importer), unit_of(target)
    if target_unit == unit or target_unit in layering.shared:
        return True
    extra = layering.extra.get(importer.removeprefix("cospeech."), frozenset())
    if unit in layering.shared and not extra:
        return False  # the shared modules import only each other (save a module exception)
    granted = layering.allowed.get(unit, frozenset()) | extra
    dotted = target.removeprefix("cospeech.")
    return any(dotted == name or dotted.startswith(name + ".") for name in granted)


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


LAYERING = read_layering()


def test_the_design_tables_are_read():
    assert {"errors", "media", "latent_geometry"} <= LAYERING.shared
    assert LAYERING.allowed["audio"] == frozenset()
    assert "data.manifest" in LAYERING.allowed["motion"]
    assert LAYERING.extra["attention.bench"] == {"audio", "motion"}


def test_every_package_and_top_level_module_has_a_row():
    units = {unit_of(module_name(path)) for path in all_modules()}
    listed = set(LAYERING.allowed) | LAYERING.shared
    assert units - listed == set(), "add these to the table in docs/design.md"
    assert listed - units == set(), "the table in docs/design.md names what does not exist"


def test_rows_name_only_real_units():
    units = set(LAYERING.allowed) | LAYERING.shared
    for unit, granted in LAYERING.allowed.items():
        for name in granted:
            assert name.split(".")[0] in units, f"{unit}: unknown {name}"
    for module in LAYERING.extra:
        root = module == "cospeech"  # the root package, src/cospeech/__init__.py
        path = PACKAGE / ("__init__.py" if root else module.replace(".", "/") + ".py")
        assert path.is_file(), module


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: module_name(p))
def test_imports_follow_the_layering(path: Path):
    importer = module_name(path)
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {importer} imports {target}"
        for target, line in imports_of(path)
        if not is_allowed(LAYERING, importer, target)
    ]
    assert bad == [], "imports the layering of docs/design.md does not allow:\n" + "\n".join(bad)


def test_the_checker_catches_what_it_should():
    """The walker finds function-level, ``from cospeech import`` and relative imports, and
    the rules refuse what the table does not allow."""
    source = (
        "from cospeech.errors import InputError\n"
        "from cospeech import __version__\n"
        "def f():\n"
        "    from cospeech.train.loop import Trainer\n"
        "    import cospeech.commands.pose\n"
        "    from cospeech import media, eval\n"
        "    from .raster import region_token_masks\n"
        "    from ..data import manifest\n"
    )
    found = [name for name, _ in imported_modules(source, "cospeech.pose.draw", False)]
    assert found == [
        "cospeech.errors", "cospeech", "cospeech.train.loop", "cospeech.commands.pose",
        "cospeech.media", "cospeech.eval", "cospeech.pose.raster", "cospeech.data.manifest",
    ]  # fmt: skip
    verdicts = [is_allowed(LAYERING, "cospeech.pose.draw", name) for name in found]
    assert verdicts == [True, True, False, False, True, False, True, False]
    assert is_allowed(LAYERING, "cospeech.motion.dataset", "cospeech.data.manifest")
    assert not is_allowed(LAYERING, "cospeech.motion.dataset", "cospeech.data.dataset")
    assert is_allowed(LAYERING, "cospeech.attention.bench", "cospeech.motion.rules")
    assert not is_allowed(LAYERING, "cospeech.attention.masks", "cospeech.motion.rules")
    assert not is_allowed(LAYERING, "cospeech.errors", "cospeech.pose")
    assert is_allowed(LAYERING, "cospeech.cli", "cospeech.commands")
    assert not is_allowed(LAYERING, "cospeech.pipeline.generate", "cospeech.commands.pose")
