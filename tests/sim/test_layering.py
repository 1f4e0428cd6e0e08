"""Import layering of the simulation code: the sweep layer runs the simulator, so the simulator
never imports it; the balancing policy imports neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import poolvisor

SRC = Path(poolvisor.__file__).parent


def imported(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved), lazy ones included."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [("sim", ("poolvisor.sweep",)), ("policies/balancing", ("poolvisor.sim", "poolvisor.sweep"))],
)
def test_lower_layers_do_not_import_higher_ones(layer: str, forbidden: tuple[str, ...]) -> None:
    files = sorted((SRC / layer).rglob("*.py"))
    assert files
    bad = {
        f"{f.relative_to(SRC)} imports {name}"
        for f in files
        for name in imported(f)
        if any(name == p or name.startswith(p + ".") for p in forbidden)
    }
    assert not bad


def test_the_check_sees_imports() -> None:
    """The scan is not vacuous: the sweep layer does import the simulator."""
    names = set().union(*(imported(f) for f in (SRC / "sweep").rglob("*.py")))
    assert "poolvisor.sim.engine" in names and "poolvisor.sim.charts" in names
