"""Scripts that no test runs (benchmarks/, analysis notebooks' code cells) still name gtahuman
modules and functions that exist: a moved function breaks them here, not on a user's machine."""
from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "analysis" / "notebooks").glob("*.ipynb"))


def source_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        code = ("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        return "\n".join(line for cell in code for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))
    return path.read_text()


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_gtahuman_name_a_script_imports_exists(path: Path) -> None:
    missing = []
    for node in ast.walk(ast.parse(source_of(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "gtahuman":
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name}" for a in node.names
                        if not hasattr(module, a.name) and not _is_module(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gtahuman":
                    importlib.import_module(alias.name)
    assert missing == [], f"{path.name} imports names that do not exist"


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
