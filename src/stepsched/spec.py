"""Schedules from text: a Python-like expression or stepsched's JSON config.

Both readers accept only stepsched's own classes, so a spec from an untrusted
source cannot run code:

- An **expression** such as ``Warmup(epochs(2)) >> Exponential(1e-3, rate=0.96,
  every=1000)`` is parsed with :mod:`ast` and interpreted node by node (never
  ``eval``). Allowed: calls to stepsched schedule classes and ``epochs`` /
  ``fraction`` / ``steps`` with positional and keyword arguments, numbers
  (with unary minus), strings, ``True``/``False``/``None``, lists and tuples,
  and the operators ``>>``, ``*``, ``+``, ``-``, ``/``. Anything else
  (attribute access, subscripts, ``**``, lambdas, comprehensions, other names)
  is refused.
- A **JSON** config is what ``keras.saving.serialize_keras_object(schedule)``
  gives. Every object in it must name a registered stepsched class before it
  is handed to ``keras.saving.deserialize_keras_object`` (in safe mode).

Length and nesting depth are capped. Every failure raises :class:`SpecError`
with a one-line message.

>>> load_spec("Warmup(100) >> Cosine(1e-3, 1e-5, 900)")
Warmup(duration=100) >> Cosine(start=0.001, end=1e-05, duration=900)
"""

from __future__ import annotations

import ast
import json
import math
import numbers
import os
from typing import Any

__all__ = ["SpecError", "load_spec", "parse_expression", "parse_json", "allowed_names"]

#: longest expression accepted, in characters
MAX_EXPRESSION_CHARS = 4_000
#: largest JSON config accepted, in bytes
MAX_JSON_BYTES = 1_000_000
#: deepest nesting accepted (expression nodes or JSON containers)
MAX_DEPTH = 40
#: largest integer accepted (a larger step count is not a schedule anyone runs)
MAX_INT = 2**53
#: most arguments / list items in one call or list literal
MAX_ITEMS = 1_000
_ALLOWED = "only stepsched schedule classes and epochs/fraction/steps can be called"
_BINOPS = {ast.RShift: ">>", ast.Mult: "*", ast.Add: "+", ast.Sub: "-", ast.Div: "/"}


class SpecError(ValueError):
    """A schedule spec that cannot be read; the message is one line."""


def _schedule_classes() -> dict[str, type]:
    import stepsched
    from stepsched.schedules.base import Recipe, Schedule

    out = {}
    for name in stepsched.__all__:
        obj = getattr(stepsched, name, None)
        if isinstance(obj, type) and issubclass(obj, Schedule) and obj not in (Schedule, Recipe):
            out[name] = obj
    return out


def _callback_schedule_classes() -> dict[str, type]:
    """Schedules that callbacks build around the user's (e.g. plateau's ``Scaled``)."""
    from stepsched import callbacks
    from stepsched.schedules.base import Schedule

    return {name: obj for name in callbacks.__all__
            if isinstance(obj := getattr(callbacks, name, None), type)
            and issubclass(obj, Schedule)}


def allowed_names() -> dict[str, Any]:
    """The names an expression may call: schedule classes and the duration helpers."""
    import stepsched

    names: dict[str, Any] = dict(_schedule_classes())
    names.update(epochs=stepsched.epochs, fraction=stepsched.fraction, steps=stepsched.steps)
    return names


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


# ------------------------------------------------------------------ expressions
def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


class _Interpreter:
    def __init__(self):
        from stepsched.schedules.base import Schedule

        self.names = allowed_names()
        self.schedule_type = Schedule

    def run(self, node: ast.AST, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise SpecError(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise SpecError(f"{_describe(node)} is not allowed in a schedule expression")
        return method(node, depth + 1)

    def _Expression(self, node, depth):
        return self.run(node.body, depth)

    def _Constant(self, node, depth):
        v = node.value
        if v is None or isinstance(v, (bool, int, float, str)):
            if isinstance(v, float) and not math.isfinite(v):
                raise SpecError(f"numbers must be finite, got {v!r}")
            _check_magnitude(v)
            return v
        raise SpecError(f"the constant {v!r} is not allowed (numbers, strings, True, False, "
                        "None only)")

    def _UnaryOp(self, node, depth):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise SpecError(f"the operator {type(node.op).__name__} is not allowed")
        v = self.run(node.operand, depth)
        if not _is_number(v):
            raise SpecError(f"unary minus/plus applies to numbers only, got {v!r}")
        return -v if isinstance(node.op, ast.USub) else +v

    def _BinOp(self, node, depth):
        symbol = _BINOPS.get(type(node.op))
        if symbol is None:
            op = "**" if isinstance(node.op, ast.Pow) else type(node.op).__name__
            raise SpecError(f"the operator {op} is not allowed (only >> * + - /)")
        a, b = self.run(node.left, depth), self.run(node.right, depth)
        sched = self.schedule_type
        if symbol == ">>":
            ok = (isinstance(a, sched) or _is_number(a)) and (isinstance(b, sched) or _is_number(b)) \
                and (isinstance(a, sched) or isinstance(b, sched))
        elif _is_number(a) and _is_number(b):
            ok = True
        elif symbol in "*+":
            ok = (isinstance(a, sched) and _is_number(b)) or (_is_number(a) and isinstance(b, sched))
        else:
            ok = isinstance(a, sched) and _is_number(b)
        if not ok:
            raise SpecError(f"cannot apply {symbol} to {_kind(a)} and {_kind(b)}")
        if symbol == ">>":
            return a >> b
        if symbol == "*":
            out = a * b
        elif symbol == "+":
            out = a + b
        elif symbol == "-":
            out = a - b
        else:
            if _is_number(b) and b == 0:
                raise SpecError("division by zero")
            out = a / b
        if _is_number(out):
            if isinstance(out, float) and not math.isfinite(out):
                raise SpecError("arithmetic overflowed to a non-finite number")
            _check_magnitude(out)
        return out

    def _List(self, node, depth):
        if len(node.elts) > MAX_ITEMS:
            raise SpecError(f"lists may have at most {MAX_ITEMS} items")
        return [self.run(e, depth) for e in node.elts]

    _Tuple = _List

    def _Name(self, node, depth):
        if node.id in self.names:
            raise SpecError(f"{node.id} must be called, e.g. {node.id}(...)")
        raise SpecError(f"unknown name {node.id!r}: {_ALLOWED}")

    def _Call(self, node, depth):
        if not isinstance(node.func, ast.Name):
            raise SpecError(f"only stepsched names can be called, not {_describe(node.func)}")
        fn = self.names.get(node.func.id)
        if fn is None:
            raise SpecError(f"unknown name {node.func.id!r}: {_ALLOWED}")
        if len(node.args) + len(node.keywords) > MAX_ITEMS:
            raise SpecError(f"too many arguments to {node.func.id}")
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise SpecError("*args is not allowed")
            args.append(self.run(a, depth))
        kwargs = {}
        for k in node.keywords:
            if k.arg is None:
                raise SpecError("**kwargs is not allowed")
            kwargs[k.arg] = self.run(k.value, depth)
        try:
            return fn(*args, **kwargs)
        except SpecError:
            raise
        except (TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
            raise SpecError(f"{node.func.id}(...): {_one_line(exc)}") from None


def _check_magnitude(v: Any) -> None:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
        raise SpecError(f"integers must be at most {MAX_INT} in magnitude")


def _describe(node: ast.AST) -> str:
    names = {"Attribute": "attribute access (a.b)", "Subscript": "subscripting (a[i])",
             "Lambda": "lambda", "ListComp": "a list comprehension",
             "GeneratorExp": "a generator expression", "DictComp": "a dict comprehension",
             "SetComp": "a set comprehension", "Dict": "a dict literal", "Set": "a set literal",
             "IfExp": "a conditional expression", "Compare": "a comparison",
             "BoolOp": "and/or", "NamedExpr": "the := operator", "JoinedStr": "an f-string",
             "Await": "await", "Yield": "yield", "Starred": "*args"}
    return names.get(type(node).__name__, type(node).__name__)


def _kind(v: Any) -> str:
    from stepsched.schedules.base import Schedule

    if isinstance(v, Schedule):
        return "a schedule"
    if _is_number(v):
        return "a number"
    return type(v).__name__


def parse_expression(text: str):
    """A schedule from an expression over stepsched names (see the module docstring)."""
    if not isinstance(text, str):
        raise SpecError(f"the expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise SpecError(f"the expression is too long ({len(text)} characters, at most "
                        f"{MAX_EXPRESSION_CHARS})")
    if "\x00" in text:
        raise SpecError("the expression contains a NUL character")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"syntax error in the expression: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise SpecError("the expression is nested too deeply") from None
    try:
        value = _Interpreter().run(tree)
    except RecursionError:
        raise SpecError("the expression is nested too deeply") from None
    return _must_be_schedule(value)


def _must_be_schedule(value: Any):
    from stepsched.schedules.base import Schedule

    if not isinstance(value, Schedule):
        raise SpecError(f"the spec must describe a schedule, got {_kind(value)} ({value!r})"[:300])
    return value


# ------------------------------------------------------------------ JSON
def _check_json(obj: Any, allowed: dict[str, type], depth: int = 0, where: str = "$") -> None:
    """Refuse anything but plain data and registered stepsched objects."""
    if depth > MAX_DEPTH:
        raise SpecError(f"the JSON config is nested too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_json(v, allowed, depth + 1, f"{where}[{i}]")
        return
    if not isinstance(obj, dict):
        if isinstance(obj, float) and not math.isfinite(obj):
            raise SpecError(f"{where}: numbers must be finite, got {obj!r}")
        return
    if "class_name" not in obj:
        # plain data (e.g. a plateau callback's bookkeeping): flat, numbers only
        if all(isinstance(k, str) and (v is None or _is_number(v)) for k, v in obj.items()):
            for k, v in obj.items():
                _check_json(v, allowed, depth + 1, f"{where}.{k}")
            return
        raise SpecError(f"{where}: every JSON object must be a serialized stepsched object "
                        "with a class_name, or a flat object of numbers")
    extra = set(obj) - {"module", "class_name", "config", "registered_name"}
    if extra:
        raise SpecError(f"{where}: unexpected keys {sorted(extra)}")
    name = obj["class_name"]
    cls = allowed.get(name) if isinstance(name, str) else None
    if cls is None:
        raise SpecError(f"{where}: class_name {name!r} is not a stepsched schedule")
    module, registered = obj.get("module"), obj.get("registered_name")
    if not isinstance(module, str) or not (module == "stepsched" or module.startswith("stepsched.")):
        raise SpecError(f"{where}: module {module!r} is not a stepsched module")
    if registered != f"stepsched>{name}":
        raise SpecError(f"{where}: registered_name must be 'stepsched>{name}', got {registered!r}")
    config = obj.get("config")
    if not isinstance(config, dict):
        raise SpecError(f"{where}: config must be an object, got {type(config).__name__}")
    for key, value in config.items():
        _check_json(value, allowed, depth + 1, f"{where}.config.{key}")


def parse_json(text: str | bytes):
    """A schedule from stepsched's JSON config (``serialize_keras_object`` output)."""
    import keras

    from stepsched.durations import Duration

    if isinstance(text, bytes):
        if len(text) > MAX_JSON_BYTES:
            raise SpecError(f"the JSON config is too large (more than {MAX_JSON_BYTES} bytes)")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError("the JSON config is not valid UTF-8") from None
    if len(text) > MAX_JSON_BYTES:
        raise SpecError(f"the JSON config is too large (more than {MAX_JSON_BYTES} bytes)")
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except RecursionError:
        raise SpecError("the JSON config is nested too deeply") from None
    if not isinstance(obj, dict):
        raise SpecError(f"the JSON config must be an object, got {type(obj).__name__}")
    allowed = dict(_schedule_classes())
    allowed.update(_callback_schedule_classes())
    allowed["Duration"] = Duration
    _check_json(obj, allowed)
    if obj["class_name"] == "Duration":
        raise SpecError("the JSON config is a duration, not a schedule")
    for name, cls in allowed.items():  # the names must resolve to these very classes
        if keras.saving.get_registered_object(f"stepsched>{name}") is not cls:
            raise SpecError(f"stepsched>{name} is not registered")
    try:
        value = keras.saving.deserialize_keras_object(obj, safe_mode=True)
    except SpecError:
        raise
    except (TypeError, ValueError, KeyError, OverflowError, RecursionError) as exc:
        raise SpecError(f"bad schedule config: {_one_line(exc)}") from None
    return _must_be_schedule(value)


def _no_constant(name: str):
    raise SpecError(f"invalid JSON: {name} is not allowed")


# ------------------------------------------------------------------ entry point
def load_spec(spec: str):
    """A schedule from a JSON file, a path to an expression file, inline JSON or an expression."""
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError("the spec is empty: give an expression or a JSON file")
    text = spec
    if len(spec) < 4096 and "\n" not in spec and os.path.isfile(spec):
        size = os.path.getsize(spec)
        if size > MAX_JSON_BYTES:
            raise SpecError(f"{spec}: file too large ({size} bytes, at most {MAX_JSON_BYTES})")
        try:
            with open(spec, "rb") as f:
                raw = f.read(MAX_JSON_BYTES + 1)
        except OSError as exc:
            raise SpecError(f"{spec}: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError(f"{spec}: not a UTF-8 text file") from None
        if spec.endswith(".json") or text.lstrip().startswith("{"):
            return parse_json(text)
        return parse_expression(text)
    if text.lstrip().startswith("{"):
        return parse_json(text)
    return parse_expression(text)
