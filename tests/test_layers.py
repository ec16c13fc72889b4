"""The package's shape, read from its source with ``ast``: layers point down, no module
imports another in a circle, and Keras's (and torch's) private API is reached from one
module only, ``stepsched._keras``.

The layer rule (also in docs/api.md, "How the package is built"): a module imports only
from its own layer or a lower one, at module level and inside functions alike.

0. foundations: ``_validate``, ``_state``, ``_stats``, ``_startup``, ``durations``,
   ``_keras`` (every private Keras touch-point; it imports only Keras, the backends
   and this layer)
1. ``schedules/``: every schedule, ``Scaled`` and ``Cooldown`` included, their key
   steps (``schedules/keys.py``) and their previews (``schedules/preview.py``, which
   ``Schedule.plot()`` draws with). A schedule is a value: nothing here acts on an
   optimizer or a model, so ``schedules/`` does not import ``_keras`` either
2. on schedules: ``spec`` (reading schedules from text), ``optimizers/``, ``phases``
   (``extend``: a new phase in a compiled model's optimizer)
3. ``callbacks/`` (they may use ``optimizers/``: the logger reads their scheduled
   values)
4. ``finder/``, ``plotting`` (the figures of the finder's result and of a plateau
   callback's reductions)
5. the application: ``demo``, ``cli``, ``__main__`` and the package itself
   (``stepsched/__init__.py``, the flat public API)

No exceptions: no import points up and no two modules import each other, directly or
round a circle, at module level or inside a function. Inside ``schedules/`` the base
class sits below the classes its operators make (``a >> b`` a ``Sequence``): they put
themselves where the operators find them (``@made_by_operators``), and what the
evaluators below the base ask of a schedule's structure they ask through its methods
(``_parts``, ``_same_values``, ``_last_piece``, ``_pointwise_of``, ``key_steps``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "stepsched"

#: bottom to top; a module belongs to the layer of the longest name here that is it or a
#: package above it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("stepsched._validate", "stepsched._state", "stepsched._stats",
                     "stepsched._startup", "stepsched.durations", "stepsched._keras")),
    ("schedules", ("stepsched.schedules",)),
    ("on schedules", ("stepsched.spec", "stepsched.optimizers", "stepsched.phases")),
    ("callbacks", ("stepsched.callbacks",)),
    ("tools", ("stepsched.finder", "stepsched.plotting")),
    ("application", ("stepsched.demo", "stepsched.cli", "stepsched.__main__", "stepsched")),
]

# ------------------------------------------------------------------ reading the source
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"), str(p)))
            for p in sorted(PACKAGE.rglob("*.py"))}


SOURCES = _sources()


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(SRC.parent)}:{node.lineno}"


def _imports(name: str, path: Path, tree: ast.Module):
    """``(node, imported module, at module level)`` for every import of a stepsched
    module, in functions too; ``from package import module`` names the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = {id(n) for n in _top_level_statements(tree)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "stepsched":
                    yield node, _known(alias.name), id(node) in top
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "stepsched":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield node, sub if sub in SOURCES else _known(target), id(node) in top


def _top_level_statements(tree: ast.Module):
    """The statements that run when the module is imported (not inside a def)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            continue  # for annotations only
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _known(module: str) -> str:
    """``module``, or the nearest package above it that exists (a name imported from it)."""
    while module not in SOURCES and "." in module:
        module = module.rpartition(".")[0]
    return module


def _layer(module: str) -> int:
    best, rank = "", None
    for i, (_, names) in enumerate(LAYERS):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and docs/api.md)")
    return rank


# ------------------------------------------------------------------ layers
def test_every_module_has_a_layer():
    for module in SOURCES:
        _layer(module)


def test_imports_point_down():
    wrong = []
    for name, (path, tree) in SOURCES.items():
        for node, target, _ in _imports(name, path, tree):
            if _layer(target) > _layer(name):
                wrong.append(f"{_where(path, node)}: {name} ({LAYERS[_layer(name)][0]}) imports "
                             f"{target} ({LAYERS[_layer(target)][0]}), a higher layer")
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


def test_schedules_do_not_reach_into_an_optimizer():
    """``_keras`` is for what acts on an optimizer or a model; a schedule is a value."""
    wrong = [f"{_where(path, node)}: {name} imports {target}"
             for name, (path, tree) in SOURCES.items() if name.startswith("stepsched.schedules")
             for node, target, _ in _imports(name, path, tree) if target == "stepsched._keras"]
    assert not wrong, "\n".join(wrong)


def _unit(module: str) -> str:
    """A subpackage (``stepsched.schedules``) or a top-level module."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return ".".join(parts[:2])
    return module


def _cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """One cycle of ``graph`` (node -> {successor: where}), as its edges' ``where``, or None."""
    done: set[str] = set()
    nodes: list[str] = []  # the path being walked
    edges: list[str] = []  # edges[i]: from nodes[i] to nodes[i + 1]

    def visit(node: str):
        nodes.append(node)
        for nxt, where in sorted(graph.get(node, {}).items()):
            if nxt in nodes:
                return edges[nodes.index(nxt):] + [where]
            if nxt not in done:
                edges.append(where)
                found = visit(nxt)
                if found:
                    return found
                edges.pop()
        nodes.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done:
            found = visit(node)
            if found:
                return found
    return None


def _graph(unit) -> dict[str, dict[str, str]]:
    """Who imports whom, in functions too (``unit`` names the node a module belongs to)."""
    graph: dict[str, dict[str, str]] = {}
    for name, (path, tree) in SOURCES.items():
        for node, target, _ in _imports(name, path, tree):
            a, b = unit(name), unit(target)
            if a != b:
                graph.setdefault(a, {}).setdefault(b, f"{_where(path, node)}: {name} -> {target}")
    return graph


def test_no_two_modules_import_each_other_in_a_circle():
    """Every import, at module level or inside a function: no module reaches itself."""
    cycle = _cycle(_graph(lambda m: m))
    assert cycle is None, "an import cycle:\n" + "\n".join(cycle)


def test_no_import_cycle_between_packages_and_modules():
    """The same between subpackages and top-level modules."""
    cycle = _cycle(_graph(_unit))
    assert cycle is None, "an import cycle:\n" + "\n".join(cycle)


def test_the_cycle_rule_sees_an_import_inside_a_function():
    """The circle this package had: the base class's operator importing the subclass it
    makes, inside the method, from the module that imports the base class."""
    base = SRC / "stepsched" / "schedules" / "base.py"
    tree = ast.parse("def __rshift__(self, other):\n    from .compose import Sequence\n")
    edges = [(target, top) for _, target, top in _imports("stepsched.schedules.base", base, tree)]
    assert edges == [("stepsched.schedules.compose", False)]
    graph = {"stepsched.schedules.base": {"stepsched.schedules.compose": "base -> compose"},
             "stepsched.schedules.compose": {"stepsched.schedules.base": "compose -> base"}}
    assert _cycle(graph) == ["base -> compose", "compose -> base"]


# ------------------------------------------------------------------ private API
#: only this module touches Keras's (and torch's) private API; test_keras_private.py checks
#: every touch-point against the installed versions
TOUCH_POINTS = "stepsched._keras"


def _keras_module():
    import stepsched._keras

    return stepsched._keras


def _own_private_names() -> set[str]:
    """The private names stepsched defines itself: modules, functions, classes, module and
    class attributes, and attributes it sets on ``self``/``cls``.

    The rule for telling them from Keras's: a private name (one leading underscore, not a
    dunder) that is read or written on an object is stepsched's own if stepsched defines
    it somewhere, or if it starts with ``_stepsched`` (what stepsched keeps on an object of
    another library); any other private name is someone else's (``optimizer._learning_rate``,
    ``model._compile_loss``, ``torch._C``, ``torch._foreach_mul``). The Keras methods that
    stepsched's optimizers override (``_keras.OVERRIDDEN_PRIVATE_METHODS``, and
    ``OVERRIDDEN_LOSS_SCALE_METHODS`` for its ``LossScaleOptimizer``) are not counted
    as stepsched's own: they may be defined in a class and called as ``super().name``, and
    nothing else."""
    names = {p.stem for p in PACKAGE.rglob("_*.py") if not p.stem.startswith("__")}
    for _, tree in SOURCES.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
            elif isinstance(node, ast.Call) and _call_name(node) == "setattr" and \
                    len(node.args) > 1 and isinstance(node.args[0], ast.Name) and \
                    node.args[0].id in ("self", "cls") and _string(node.args[1]):
                names.add(node.args[1].value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    ast.unparse(node.func.value) == "self.__dict__" and \
                    node.func.attr == "setdefault" and _string(node.args[0]):
                names.add(node.args[0].value)
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and \
                    ast.unparse(node.value) == "self.__dict__" and _string(node.slice):
                names.add(node.slice.value)
    return {n for n in names if _is_private(n)} - _overridden()


def _overridden() -> set[str]:
    """The private Keras methods stepsched's classes override (and call as ``super()``)."""
    keras_module = _keras_module()
    return set(keras_module.OVERRIDDEN_PRIVATE_METHODS) | set(
        keras_module.OVERRIDDEN_LOSS_SCALE_METHODS)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name != "_" and \
        name.isidentifier()


def _string(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _is_super_call(node) -> bool:
    return isinstance(node, ast.Call) and _call_name(node) == "super"


def _private_touches(tree: ast.Module, own: set[str]):
    """``(node, what)`` for every use of another library's private API in ``tree``."""
    overridden = _overridden()
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                    ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and _string(n.body[0].value)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if not node.level else []
            for module in modules:
                parts = module.split(".")
                if parts[0] in ("keras", "tensorflow", "torch", "jax") and (
                        parts[1:2] in (["src"], ["python"]) or any(_is_private(p) for p in parts)):
                    yield node, f"imports {module}"
            if isinstance(node, ast.ImportFrom) and not node.level and \
                    (node.module or "").split(".")[0] in ("keras", "tensorflow", "torch", "jax"):
                for alias in node.names:
                    if _is_private(alias.name):
                        yield node, f"imports {alias.name} from {node.module}"
        elif isinstance(node, ast.Attribute):
            name = node.attr
            if name in ("currentframe", "_getframe") or name in ("f_back", "f_locals"):
                yield node, f"walks the stack ({ast.unparse(node)})"
            elif name in overridden:
                if not _is_super_call(node.value):
                    yield node, f"calls Keras's private {ast.unparse(node)} (only super().{name}" \
                                " in an override)"
            elif _is_private(name) and name not in own and not name.startswith("_stepsched"):
                yield node, f"uses another library's private {ast.unparse(node)}"
        elif isinstance(node, ast.Constant) and id(node) not in docstrings and \
                isinstance(node.value, str) and _is_private(node.value):
            # getattr(model, "_compile_loss"), a tuple of names to look up
            if node.value in overridden or (node.value not in own and
                                            not node.value.startswith("_stepsched")):
                yield node, f"names another library's private attribute {node.value!r}"


def _stray_touches() -> list[str]:
    own = _own_private_names()
    return [f"{_where(path, node)}: {name} {what}"
            for name, (path, tree) in SOURCES.items() if name != TOUCH_POINTS
            for node, what in _private_touches(tree, own)]


def test_private_keras_api_only_in_the_touch_point_module():
    stray = _stray_touches()
    assert not stray, ("private Keras/torch API outside stepsched/_keras.py (give it an "
                       "accessor there, with a test in test_keras_private.py):\n"
                       + "\n".join(stray))


@pytest.mark.parametrize("code, what", [
    ("from keras.src.backend.common import global_state", "imports keras.src"),
    ("import torch._C", "imports torch._C"),
    ("x = torch._C._disabled_torch_function_impl", "private torch._C"),
    ("before = torch._foreach_mul(values, 1.0)", "private torch._foreach_mul"),
    ("opt._learning_rate = schedule", "private opt._learning_rate"),
    ("parts = [getattr(model, n) for n in ('_compile_loss', '_compile_metrics')]",
     "'_compile_loss'"),
    ("import inspect\nframe = inspect.currentframe()", "walks the stack"),
    ("frame = sys._getframe(1)", "walks the stack"),
    ("value = optimizer._get_current_learning_rate()", "only super()"),
])
def test_the_rule_catches(code, what):
    found = [w for _, w in _private_touches(ast.parse(code), _own_private_names())]
    assert any(what in w for w in found), found


@pytest.mark.parametrize("code", [
    "from . import _keras\n_keras.rate_of(optimizer)",
    "self._stepsched = state",
    "st = getattr(optimizer, '_stepsched', None)",
    "graph._stepsched_rates = built",
    "value = piece._eval(t, xp)",
    "def _apply_weight_decay(self, variables):\n"
    "    return super()._apply_weight_decay(variables)",
])
def test_the_rule_lets_stepsched_use_its_own_private_names(code):
    assert list(_private_touches(ast.parse(code), _own_private_names())) == []
