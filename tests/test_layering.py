"""The package's import graph (from the AST of every module, imports inside functions included):
no cycle, and no arrow that runs the wrong way (CONTRIBUTING.md, "Layering")."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import lightvid

ROOT = Path(lightvid.__file__).parent
LOW_LEVEL = ("lightvid.models", "lightvid.ops")  # the model zoo and its operators
HIGH_LEVEL = ("lightvid.data", "lightvid.train", "lightvid.compress", "lightvid.accel", "lightvid.analysis",
              "lightvid.baselines", "lightvid.run_spec", "lightvid.args")
INFERENCE = ("lightvid.accel.predict", "lightvid.accel.export", "lightvid.run_spec", "lightvid.train.config",
             "lightvid.train.evaluate")  # and what they build on
LIGHTNING = ("lightning", "pytorch_lightning")
# CONTRIBUTING.md's list: what each part of the package may import (cli modules aside: they may import anything
# below them but another package's cli). train/config.py is the Lightning-free part of train that run_spec uses.
BASE = {"errors", "fileio", "precision"}  # bottom-level modules every layer above them may use
ALLOWED = {
    "lightvid": {"models"},
    "cli": {"lightvid", "checkpoint", "errors"},
    "compress": {"train", "train.config", "run_spec", "data", "models", "checkpoint", "args"} | BASE,
    "train": {"train.config", "run_spec", "analysis.summary", "analysis.draw", "data", "models", "checkpoint",
              "args"} | BASE,
    "accel": {"run_spec", "train.config", "analysis.summary", "data", "models", "checkpoint", "args"} | BASE,
    "run_spec": {"train.config", "data", "models", "checkpoint"} | BASE,
    "train.config": {"data", "models"} | BASE,
    "analysis": {"accel", "run_spec", "analysis.summary", "analysis.draw", "data", "models", "args"} | BASE,
    "analysis.summary": {"models", "args", "errors"},
    "analysis.draw": {"data", "models"} | BASE,
    "track": {"train", "train.config", "run_spec", "analysis.summary", "data", "models", "ops", "checkpoint",
              "args"} | BASE,
    "baselines": {"data", "models", "args"} | BASE,
    "data": BASE,
    "models": {"ops", "checkpoint", "errors"},
    "ops": {"checkpoint", "errors"},
    "checkpoint": set(),
    "fileio": {"errors"},
    "precision": {"errors"},
    "errors": set(),
    "args": set(),
}


def module_names() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports (top level or inside functions): lightvid modules by their full
    name, others by their top-level package."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.name if alias.name in known else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod in known:
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known]
                out.update(subs)
                if len(subs) < len(node.names):
                    out.add(mod)
            elif mod.startswith("lightvid"):
                raise AssertionError(f"{path}: imports {mod!r}, which is not a module of the package")
            elif mod != "__future__":
                out.add(mod.split(".")[0])
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = module_names()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _is_cli(name: str) -> bool:
    return name == "lightvid.cli" or name.endswith(".cli")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the package's modules, or None. A package's ``__init__`` importing its
    own submodules is not an edge back (Python runs it before any submodule)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(graph.get(node, ()))
    return seen


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "lightvid.models.registry" in graph["lightvid.models.resnet3d"]
    # lightvid/cli.py imports its subcommands with importlib; `main` imports errors inside the function
    assert "lightvid.errors" in graph["lightvid.cli"]
    assert "lightning" in graph["lightvid.train.run"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"torch"}}) is None


def test_models_and_ops_import_nothing_above_them():
    wrong = [f"{m} -> {d}" for m, deps in import_graph().items() if _under(m, LOW_LEVEL)
             for d in deps if _under(d, HIGH_LEVEL) or _is_cli(d)]
    assert not wrong, "the model zoo imports from above it: " + ", ".join(sorted(wrong))


def part(module: str) -> str:
    """The line of CONTRIBUTING.md's list a module belongs to: ``lightvid.train.run`` -> ``train``."""
    if module in ("lightvid.train.config", "lightvid.analysis.summary"):
        return module.removeprefix("lightvid.")
    if module == "lightvid.analysis.regions_draw":
        return "analysis.draw"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lightvid"


def test_every_arrow_is_allowed():
    wrong = []
    for m, deps in import_graph().items():
        if _is_cli(m) and m != "lightvid.cli":
            continue  # a package's cli.py may import anything below it (not another cli: tested below)
        src = part(m)
        allowed = ALLOWED.get(src)
        assert allowed is not None, f"{m}: add its part {src!r} to ALLOWED here and to CONTRIBUTING.md's list"
        wrong += [f"{m} -> {d}" for d in deps if d.startswith("lightvid") and part(d) != src and part(d) not in allowed]
    assert not wrong, "imports against CONTRIBUTING.md's layering list: " + ", ".join(sorted(wrong))


def test_library_modules_import_no_cli_module():
    wrong = [f"{m} -> {d}" for m, deps in import_graph().items() for d in deps
             if _is_cli(d) and (not _is_cli(m) or part(m) != part(d))]
    assert not wrong, "modules import another package's cli module: " + ", ".join(sorted(wrong))


def test_inference_reaches_no_lightning_even_through_lazy_imports():
    graph = import_graph()
    for start in INFERENCE:
        hit = sorted(m for m in reachable(graph, start) if m in LIGHTNING)
        assert not hit, f"{start} reaches {hit}"


def test_inference_imports_load_no_lightning():
    code = ("import sys, lightvid.accel.predict, lightvid.accel.export, lightvid.accel.cli, lightvid.run_spec\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {LIGHTNING!r}]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
