"""The package's import graph: no cycle among kd_jax modules (function-local imports included), and kd_jax never
imports the experiments that import it."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
  """Every module of `modules` (or outside name) that `path` imports anywhere in its body."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        found.add(sub if sub in modules else node.module)  # `from pkg import module` imports that module
  return found


def _graph():
  files = sorted((REPO / "kd_jax").rglob("*.py"))
  modules = {_module_name(f) for f in files}
  return {_module_name(f): _imports(f, modules) for f in files}, modules


def test_kd_jax_has_no_import_cycle():
  graph, modules = _graph()
  edges = {m: {d for d in deps if d in modules and d != m} for m, deps in graph.items()}
  state: dict[str, int] = {}  # 1: on the current path, 2: done

  def visit(m, path):
    state[m] = 1
    for d in sorted(edges[m]):
      if state.get(d) == 1:
        raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
      if d not in state:
        visit(d, path + [d])
    state[m] = 2

  for m in sorted(edges):
    if m not in state:
      visit(m, [m])


def test_kd_jax_never_imports_experiments_or_benchmarks():
  graph, _ = _graph()
  bad = {m: sorted(d for d in deps if d.split(".")[0] in ("experiments", "benchmarks", "run", "tests"))
         for m, deps in graph.items()}
  assert not {m: d for m, d in bad.items() if d}


def test_the_graph_sees_function_local_imports(tmp_path):
  """The check would catch the cycle the layout used to hide in a function body."""
  f = tmp_path / "m.py"
  f.write_text("def run():\n  from kd_jax import reproduce\n  return reproduce\n")
  assert "kd_jax.reproduce" in _imports(f, {"kd_jax.reproduce"})
