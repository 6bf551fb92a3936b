"""No import cycles among bayescg's modules, counting imports inside functions too (a cycle there is a
layering knot even when it does not break at import time), and every module imports on its own in a fresh
interpreter (an import-time cycle would fail there)."""
import ast
import subprocess
import sys
from pathlib import Path

import bayescg

ROOT = Path(bayescg.__file__).parent


def _modules() -> dict:
    mods = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = ("bayescg",) + p.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _imported(mod: str, path: Path, node, mods) -> set:
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        for a in node.names:
            out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
    else:
        out |= {a.name for a in node.names}
    return {m for m in out if m in mods and m != mod}


def import_graph() -> dict:
    """module -> bayescg modules it imports anywhere in its body, except in a module-level ``__getattr__``
    (PEP 562 lazy forwarding of a public name, which runs only when the name is asked for).  A package's
    own ``__init__`` is not counted as imported by its submodules (Python runs it first anyway)."""
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        body = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "__getattr__")]
        edges = set()
        for top in body:
            for node in ast.walk(top):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    edges |= _imported(mod, path, node, mods)
        graph[mod] = {e for e in edges if not mod.startswith(e + ".")}
    return graph


def find_cycle(graph: dict):
    """One cycle [a, b, ..., a] of the directed graph, or None."""
    state = {}

    def visit(v, stack):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w, stack)
                if found:
                    return found
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v, [])
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_function_level_imports():
    g = import_graph()
    assert "bayescg.commands" in g["bayescg.cli"]  # cli imports commands inside main()
    assert "bayescg.simulate" in g["bayescg.scales"]


def test_no_import_cycle_among_bayescg_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = sorted(_modules())
    code = ("import importlib, sys\nbad = []\nfor n in sys.argv[1:]:\n"
            "    for k in [k for k in sys.modules if k == 'bayescg' or k.startswith('bayescg.')]:\n"
            "        del sys.modules[k]\n"
            "    try:\n        importlib.import_module(n)\n"
            "    except Exception as e:\n        bad.append(f'{n}: {e!r}')\n"
            "print('\\n'.join(bad))\nsys.exit(1 if bad else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
