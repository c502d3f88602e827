"""The layering of `gtahuman`, written down as import contracts and checked on the source
(docs/ARCHITECTURE.md, "Layers"). Every import counts, also one inside a function; only
``if TYPE_CHECKING:`` blocks are left out. The checker itself is tested on a package made here,
so that a broken contract is seen to fail."""
from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# (the modules a contract covers, the modules they must not import, why)
FORBIDDEN = [
    (("gtahuman.body", "gtahuman.metrics", "gtahuman.metric_modules", "gtahuman.registry", "gtahuman.atomic", "gtahuman.pickle_globals",
      "gtahuman.config", "gtahuman.config_schema", "gtahuman.config_names", "gtahuman.config_checks",
      "gtahuman.config_problems",
      "gtahuman.data.formats"),
     ("gtahuman.data.", "gtahuman.miniworld", "gtahuman.models", "gtahuman.systems", "gtahuman.adaptation",
      "gtahuman.sim2real", "gtahuman.video", "gtahuman.fitting", "gtahuman.run_", "gtahuman.train", "gtahuman.sweep",
      "gtahuman.check"),
     "the foundation (body model, metrics, file formats, config) knows nothing of what is built on it"),
    (("gtahuman.miniworld",),
     ("gtahuman.models", "gtahuman.systems", "gtahuman.adaptation", "gtahuman.sim2real", "gtahuman.video",
      "gtahuman.run_", "gtahuman.train", "gtahuman.sweep", "gtahuman.check", "gtahuman.fitting",
      "gtahuman.data.datasets", "gtahuman.data.datamodule", "gtahuman.data.sampler", "gtahuman.data.index",
      "gtahuman.data.prepare"),
     "the mini world produces files in the real formats (issue 21): it uses the formats' writers and the "
     "factors' definitions, never the data layer's readers, nor models or runs"),
    (("gtahuman.data",),
     ("gtahuman.miniworld", "gtahuman.models", "gtahuman.systems", "gtahuman.adaptation", "gtahuman.sim2real", "gtahuman.video",
      "gtahuman.run_", "gtahuman.train", "gtahuman.sweep", "gtahuman.check", "gtahuman.fitting"),
     "the data layer reads and mixes data; it does not know the models or the runs"),
    (("gtahuman.models",),
     ("gtahuman.data", "gtahuman.systems", "gtahuman.adaptation", "gtahuman.video", "gtahuman.run_",
      "gtahuman.train", "gtahuman.sweep"),
     "networks take tensors, not datasets or runs"),
    (("gtahuman.systems", "gtahuman.adaptation.dann", "gtahuman.adaptation.jan", "gtahuman.adaptation.rsd",
      "gtahuman.adaptation.objective", "gtahuman.adaptation.gradient_reversal"),
     ("gtahuman.run_", "gtahuman.train", "gtahuman.sweep", "gtahuman.video", "gtahuman.check", "gtahuman.sim2real"),
     "LightningModules and DA objectives do not know how a run is assembled; the run hands HMRSystem "
     "its sim2real translation (issue 21)"),
    (tuple(f"gtahuman.fitting.{m}" for m in ("__main__", "keypoint_map", "body_points", "init", "priors",
                                               "smplify3d", "analyser", "annotate", "static_fits")),
     ("gtahuman.miniworld",),
     "the annotator's correspondences are its own guess at a game's rig: it never reads how the mini world "
     "places game joints (issue 24; only fitting.synthetic, a test-data maker, films the mini world's motion)"),
    (("gtahuman",), ("analysis", "experiments"),
     "the library never imports the analyses or the command-line entry points built on it"),
]


def module_names(root: Path, package: str) -> dict[str, Path]:
    names = {}
    for path in (root / package).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports (absolute and relative), TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
               for n in ast.walk(block)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name imported from a module counts as the module)."""
    names = module_names(root, package)
    graph = {}
    for name, path in names.items():
        targets = set()
        for target in imports_of(name, path):
            while target and target not in names and target.startswith(package):
                target = target.rpartition(".")[0]
            if target and target != name and (target in names or not target.startswith(package)):
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start] & graph.keys())))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child] & graph.keys()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p if p.endswith((".", "_")) else p + ".") for p in prefixes)


def broken_contracts(graph: dict[str, set[str]], contracts=FORBIDDEN) -> list[str]:
    broken = []
    for covered, forbidden, why in contracts:
        for module, targets in sorted(graph.items()):
            if not _within(module, covered):
                continue
            for target in sorted(targets):
                if _within(target, forbidden) and not _within(target, covered):
                    broken.append(f"{module} imports {target} ({why})")
    return broken


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SRC, "gtahuman")


def test_gtahuman_has_no_import_cycle(graph) -> None:
    assert cycles(graph) == []


def test_no_layer_imports_one_above_it(graph) -> None:
    assert broken_contracts(graph) == []


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path) -> None:
    package = tmp_path / "gtahuman"
    for folder in ("body", "systems", "data"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "body" / "smpl.py").write_text("def f():\n    from gtahuman.systems.hmr import X  # a deliberate bad import\n")
    (package / "systems" / "hmr.py").write_text("from gtahuman.body import smpl\nX = 1\n")
    (package / "data" / "a.py").write_text("from . import b\n")
    (package / "data" / "b.py").write_text("from .a import thing\n")
    (package / "data" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gtahuman.systems import hmr\n")
    made = import_graph(tmp_path, "gtahuman")
    assert sorted(map(tuple, cycles(made))) == [("gtahuman.body.smpl", "gtahuman.systems.hmr"),
                                                 ("gtahuman.data.a", "gtahuman.data.b")]
    assert broken_contracts(made) == [
        "gtahuman.body.smpl imports gtahuman.systems.hmr (the foundation (body model, metrics, file formats, config) "
        "knows nothing of what is built on it)"]  # data.c's import is for type checking only


def imports_inside_functions_without_a_reason(root: Path) -> list[str]:
    """``file:line`` of every import inside a function with no comment on its line (or its last
    line) or on the line above: such an import hides a dependency, so it must say why it waits."""
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        seen: set[int] = set()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in seen:
                    seen.add(node.lineno)
                    said = ("#" in lines[node.lineno - 1] or "#" in lines[node.end_lineno - 1]
                            or lines[node.lineno - 2].strip().startswith("#"))
                    if not said:
                        found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_every_import_inside_a_function_says_why(tmp_path) -> None:
    assert imports_inside_functions_without_a_reason(SRC / "gtahuman") == []
    # the check itself: a silent one is found, a commented one is not
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text("def f():\n    import json\n    import csv  # stdlib, shown only\n")
    assert imports_inside_functions_without_a_reason(package) == ["pkg/m.py:2"]
