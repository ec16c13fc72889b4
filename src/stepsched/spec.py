"""Schedules from text: a Python-like expression or stepsched's JSON config.

Both readers accept only stepsched's own classes, so a spec from an untrusted
source cannot run code:

- An **expression** such as ``Warmup(epochs(2)) >> Exponential(1e-3, rate=0.96,
  every=1000)`` is parsed with :mod:`ast` and interpreted node by node (never
  ``eval``). Allowed: calls to stepsched schedule classes (those of
  ``stepsched.schedules`` and plateau reduction's ``Scaled``) and ``epochs`` /
  ``fraction`` / ``steps`` / ``samples`` / ``tokens`` with positional and
  keyword arguments, numbers (with unary minus), strings,
  ``True``/``False``/``None``, lists and tuples, and the operators ``>>``,
  ``*``, ``+``, ``-``, ``/``. Anything else (attribute access, subscripts,
  ``**``, lambdas, comprehensions, other names) is refused. Every schedule's
  ``repr`` is such an expression: ``parse(repr(s))`` has the config of ``s``
  (a plateau ``Scaled``'s bookkeeping aside, which is not in its repr).
- A **JSON** config is what ``keras.saving.serialize_keras_object(schedule)``
  gives. Every object in it must name a registered stepsched class before it
  is handed to ``keras.saving.deserialize_keras_object`` (in safe mode).

Length and nesting depth are capped. Every failure raises :class:`SpecError`
with a one-line message.

>>> load_spec("Warmup(100) >> Cosine(1e-3, 1e-5, 900)")
Warmup(duration=100) >> Cosine(start=0.001, end=1e-05, duration=900)

For text from a config file or a command-line flag, :func:`parse` reads an
expression or inline JSON (never a file), and :func:`get_schedule` builds a
schedule from one of transformers' scheduler names (``lr_scheduler_type``)::

    parse("Warmup(500) >> Cosine(1e-3, 0, 9500)")
    get_schedule("cosine", peak=1e-3, warmup=500, total=10_000)
"""

from __future__ import annotations

import ast
import json
import math
import numbers
import os
from typing import Any

__all__ = ["SpecError", "load_spec", "parse", "parse_expression", "parse_json", "allowed_names",
           "get_schedule", "SCHEDULER_NAMES"]

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
_ALLOWED = ("only stepsched schedule classes and epochs/fraction/steps/samples/tokens can "
            "be called")
_BINOPS = {ast.RShift: ">>", ast.Mult: "*", ast.Add: "+", ast.Sub: "-", ast.Div: "/"}


class SpecError(ValueError):
    """A schedule spec that cannot be read; the message is one line."""


def _schedule_classes() -> dict[str, type]:
    from stepsched import schedules
    from stepsched.schedules.base import Recipe, Schedule

    out = {}
    for name in schedules.__all__:  # the schedules of the flat API (stepsched.__all__)
        obj = getattr(schedules, name, None)
        if isinstance(obj, type) and issubclass(obj, Schedule) and obj not in (Schedule, Recipe):
            out[name] = obj
    return out


def _callback_schedule_classes() -> dict[str, type]:
    """Schedules that callbacks build around the user's (plateau's ``Scaled``)."""
    from stepsched.schedules.scaled import Scaled

    return {"Scaled": Scaled}


def allowed_names() -> dict[str, Any]:
    """The names an expression may call: schedule classes and the duration helpers."""
    from stepsched import durations

    names: dict[str, Any] = dict(_schedule_classes())
    names.update(_callback_schedule_classes())
    names.update(epochs=durations.epochs, fraction=durations.fraction, steps=durations.steps,
                 samples=durations.samples, tokens=durations.tokens)
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
        raise SpecError(f"unknown name {node.id!r}: {_ALLOWED}{_name_hint(node.id)}")

    def _Call(self, node, depth):
        if not isinstance(node.func, ast.Name):
            raise SpecError(f"only stepsched names can be called, not {_describe(node.func)}")
        fn = self.names.get(node.func.id)
        if fn is None:
            raise SpecError(f"unknown name {node.func.id!r}: {_ALLOWED}"
                            f"{_name_hint(node.func.id)}")
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


def _name_hint(name: str) -> str:
    """A pointer for names that are close to an allowed one or are a scheduler name."""
    if name in SCHEDULER_NAMES:
        return (f"; {name!r} is a transformers scheduler name: use "
                f"stepsched.get_schedule({name!r}, peak=..., warmup=..., total=...)")
    import difflib

    close = difflib.get_close_matches(name, list(allowed_names()), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


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


# ------------------------------------------------------------------ entry points
def parse(text: str):
    """A schedule from text: a stepsched expression or an inline JSON config.

    The text a config file or a command-line flag holds, e.g.
    ``parse("Warmup(500) >> Cosine(1e-3, 0, 9500)")`` or
    ``parse("Warmup(fraction(0.05)) >> Cosine(3e-4, 0, fraction(0.95))")``.
    Text starting with ``{`` is read as the JSON that
    ``keras.saving.serialize_keras_object(schedule)`` gives; anything else as an
    expression over stepsched's names (interpreted on an allow-list, never
    evaluated; see :mod:`stepsched.spec`). Unlike :func:`load_spec` (what
    ``stepsched show`` uses) it never opens a file. For transformers' names
    (``"cosine"``, ``"linear"``, ...) use :func:`get_schedule`.

    Raises :class:`SpecError` (a ``ValueError``) with a one-line message.

    >>> parse("Warmup(2) >> Linear(1.0, 0.0, 2)").at(range(5)).tolist()
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if not isinstance(text, str):
        raise SpecError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise SpecError("text is empty: give a schedule expression or a JSON config")
    if text.lstrip().startswith("{"):
        return parse_json(text)
    return parse_expression(text)


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


# ------------------------------------------------------------------ transformers' names
#: transformers' scheduler names (``SchedulerType`` values, the ``lr_scheduler_type``
#: of ``TrainingArguments``), each with the options ``get_schedule`` takes for it
#: (transformers' ``lr_scheduler_kwargs`` names)
SCHEDULER_NAMES: dict[str, tuple[str, ...]] = {
    "linear": (),
    "cosine": ("num_cycles",),
    "cosine_with_restarts": ("num_cycles",),
    "polynomial": ("lr_end", "power"),
    "constant": (),
    "constant_with_warmup": (),
    "inverse_sqrt": ("timescale",),
    "reduce_lr_on_plateau": (),
    "cosine_with_min_lr": ("num_cycles", "min_lr", "min_lr_rate"),
    "cosine_warmup_with_min_lr": ("num_cycles", "min_lr", "min_lr_rate", "warmup_lr_rate"),
    "warmup_stable_decay": ("num_decay_steps", "num_stable_steps", "warmup_type", "decay_type",
                            "min_lr_ratio", "num_cycles"),
}
#: names whose schedule takes warmup and total as epochs(...) / fraction(...) too
_SYMBOLIC_OK = ("cosine", "cosine_with_min_lr", "constant", "constant_with_warmup",
                "inverse_sqrt", "warmup_stable_decay")
_ALIASES = {"num_warmup_steps": "warmup", "num_training_steps": "total"}


def get_schedule(name: str, peak: float, warmup=0, total=None, **options):
    """A schedule from one of transformers' scheduler names, with the same rates.

    The counterpart of transformers' ``get_scheduler(name, optimizer,
    num_warmup_steps, num_training_steps, scheduler_specific_kwargs)``, for the
    ``lr_scheduler_type`` / ``lr_scheduler_kwargs`` a config file or a
    command-line flag holds::

        lr = ss.get_schedule("cosine", peak=3e-4, warmup=500, total=10_000)
        lr = ss.get_schedule(cfg["lr_scheduler_type"], peak=cfg["learning_rate"],
                             warmup=cfg["warmup_steps"], total=total_steps,
                             **cfg.get("lr_scheduler_kwargs", {}))

    ``peak`` is the optimizer's learning rate in transformers' call (its
    ``LambdaLR`` multiplies it), ``warmup`` is ``num_warmup_steps`` and ``total``
    is ``num_training_steps`` (those two names are accepted as well). Options
    are transformers' keyword arguments for that name:

    ==============================  ===============================================
    name                            options (transformers' defaults)
    ==============================  ===============================================
    ``linear``                      none
    ``cosine``                      ``num_cycles=0.5``
    ``cosine_with_restarts``        ``num_cycles=1`` (a whole number)
    ``polynomial``                  ``lr_end=1e-7``, ``power=1.0``
    ``constant``                    none (and no warmup)
    ``constant_with_warmup``        none (``total`` is not needed)
    ``inverse_sqrt``                ``timescale`` (default ``warmup`` or 10,000)
    ``cosine_with_min_lr``          one of ``min_lr`` / ``min_lr_rate``; ``num_cycles=0.5``
    ``cosine_warmup_with_min_lr``   one of ``min_lr`` / ``min_lr_rate``;
                                    ``warmup_lr_rate``; ``num_cycles=0.5``
    ``warmup_stable_decay``         ``num_decay_steps`` (required), ``num_stable_steps``
                                    (or ``total``), ``warmup_type="linear"``,
                                    ``decay_type="cosine"``, ``min_lr_ratio=0``
    ==============================  ===============================================

    Every step up to ``total`` has transformers' rate (tests/test_names.py
    checks every name against transformers' formulas). Past ``total``
    transformers' cosine schedules with ``num_cycles=0.5`` rise again; these
    hold their final value, as :class:`~stepsched.WarmupCosine` does (any other
    ``num_cycles`` gives transformers' periodic wave at every step).
    ``reduce_lr_on_plateau`` is not a function of the step: the error says
    what to use instead (:class:`stepsched.callbacks.ReduceLROnPlateau`).

    ``warmup`` and ``total`` may be ``epochs(...)`` / ``fraction(...)`` for
    ``cosine`` (``num_cycles=0.5``), ``cosine_with_min_lr`` (with
    ``min_lr``/``min_lr_rate``, ``num_cycles=0.5``), ``constant``,
    ``constant_with_warmup``, ``inverse_sqrt`` and ``warmup_stable_decay``
    (with ``warmup_type="linear"``, ``num_cycles=0.5``); the other names need
    numbers of steps. A bad name, option or value raises ``ValueError`` or
    ``TypeError`` naming it.

    >>> get_schedule("linear", peak=1.0, warmup=2, total=6).at(range(8)).tolist()
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    import enum

    from . import _validate
    from .durations import Duration, duration_arg, optional_duration_arg

    if isinstance(name, enum.Enum) and isinstance(name.value, str):
        name = name.value  # transformers' SchedulerType
    if not isinstance(name, str):
        raise TypeError(f"name must be a scheduler name (a string), got {name!r} "
                        f"({type(name).__name__})")
    if name not in SCHEDULER_NAMES:
        import difflib

        close = difflib.get_close_matches(name.lower(), list(SCHEDULER_NAMES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"name must be one of {', '.join(map(repr, SCHEDULER_NAMES))}; "
                         f"got {name!r}{hint}")
    given = {"warmup": warmup, "total": total}
    for alias, arg in _ALIASES.items():
        if alias in options:
            value = options.pop(alias)
            default = given[arg] is None if arg == "total" else \
                (type(given[arg]) is int and given[arg] == 0)
            if not default:
                raise TypeError(f"give {arg} or its transformers name {alias}, not both")
            given[arg] = value
    warmup, total = given["warmup"], given["total"]
    allowed = SCHEDULER_NAMES[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
        raise TypeError(f"get_schedule({name!r}) got unexpected option(s) "
                        f"{', '.join(unknown)}; {name!r} {takes}")
    if name == "reduce_lr_on_plateau":
        raise ValueError(
            "name 'reduce_lr_on_plateau' is not a function of the step: it reacts to a metric. "
            "Use a constant rate, get_schedule('constant', peak=...) (or any schedule), with "
            "stepsched.callbacks.ReduceLROnPlateau(monitor=..., factor=..., patience=..., "
            "every=None) in fit()'s callbacks, which has torch's ReduceLROnPlateau semantics")
    peak = _validate.number("peak", peak, positive=True)
    warmup = optional_duration_arg("warmup", warmup)
    total = duration_arg("total", total, allow_none=True)
    warmup, total = (v.value if isinstance(v, Duration) and v.unit == "steps" else v
                     for v in (warmup, total))
    return _BUILDERS[name](name, peak, warmup, total, **options)


def _plain_steps(name: str, why: str = "", **durations) -> None:
    from .durations import Duration

    symbolic = {k: v for k, v in durations.items() if isinstance(v, Duration)}
    if symbolic:
        got = ", ".join(f"{k}={v!r}" for k, v in symbolic.items())
        raise ValueError(
            f"get_schedule({name!r}{why}) needs {', '.join(durations)} as numbers of steps, got "
            f"{got}; resolve them first (e.g. total = epochs * steps_per_epoch), or use a name "
            f"that takes epochs()/fraction(): {', '.join(_SYMBOLIC_OK)}")


def _need_total(name: str, warmup, total) -> None:
    from .durations import Duration

    if total is None:
        raise ValueError(f"get_schedule({name!r}) needs total (transformers' "
                         "num_training_steps)")
    if not isinstance(warmup, Duration) and not isinstance(total, Duration) \
            and not total > warmup:
        raise ValueError(f"total must be > warmup (total includes the warmup); got "
                         f"warmup={warmup!r}, total={total!r}")


def _num_cycles(value, *, whole: bool = False) -> float:
    from . import _validate

    if whole:
        return _validate.integer("num_cycles", value, minimum=1)
    return _validate.number("num_cycles", value, positive=True)


def _warmed(warmup, schedule, start: float = 0.0, shape: str = "linear"):
    from .schedules import Warmup

    return Warmup(warmup, start=start, shape=shape) >> schedule if warmup else schedule


def _cosine_wave(peak: float, low: float, length: float):
    """transformers' ``0.5 (1 + cos(2 pi n p))`` between ``peak`` and ``low``, forever."""
    from .schedules import Cosine, Restarts

    return Restarts(Cosine(peak, low, length) >> Cosine(low, peak, length))


def _min_lr(name: str, peak: float, min_lr, min_lr_rate) -> float:
    from . import _validate

    if min_lr is not None and min_lr_rate is not None:
        raise ValueError(f"get_schedule({name!r}) takes one of min_lr or min_lr_rate, not both")
    if min_lr is not None:
        return _validate.number("min_lr", min_lr, nonnegative=True)
    if min_lr_rate is None:
        raise ValueError(f"get_schedule({name!r}) needs min_lr or min_lr_rate (transformers "
                         "raises too)")
    return _validate.number("min_lr_rate", min_lr_rate, nonnegative=True) * peak


def _build_linear(name, peak, warmup, total):
    from .schedules import Linear

    _need_total(name, warmup, total)
    _plain_steps(name, warmup=warmup, total=total)
    return _warmed(warmup, Linear(peak, 0.0, total - warmup))


def _build_cosine(name, peak, warmup, total, num_cycles=0.5, low=0.0):
    from .schedules import WarmupCosine

    _need_total(name, warmup, total)
    num_cycles = _num_cycles(num_cycles)
    if num_cycles == 0.5:
        return WarmupCosine(peak, warmup, total, end=low)
    _plain_steps(name, f", num_cycles={num_cycles!r}", warmup=warmup, total=total)
    return _warmed(warmup, _cosine_wave(peak, low, (total - warmup) / (2.0 * num_cycles)))


def _build_cosine_with_min_lr(name, peak, warmup, total, num_cycles=0.5, min_lr=None,
                              min_lr_rate=None):
    low = _min_lr(name, peak, min_lr, min_lr_rate)
    return _build_cosine(name, peak, warmup, total, num_cycles, low=low)


def _build_cosine_with_restarts(name, peak, warmup, total, num_cycles=1):
    from .schedules import Cosine, Restarts

    _need_total(name, warmup, total)
    n = _num_cycles(num_cycles, whole=True)
    _plain_steps(name, warmup=warmup, total=total)
    return _warmed(warmup, Restarts(Cosine(peak, 0.0, (total - warmup) / n), limit=n))


def _build_polynomial(name, peak, warmup, total, lr_end=1e-7, power=1.0):
    from . import _validate
    from .schedules import Polynomial

    _need_total(name, warmup, total)
    lr_end = _validate.number("lr_end", lr_end)
    power = _validate.number("power", power, positive=True)
    if not peak > lr_end:
        raise ValueError(f"lr_end must be smaller than peak; got lr_end={lr_end!r}, "
                         f"peak={peak!r}")
    _plain_steps(name, warmup=warmup, total=total)
    return _warmed(warmup, Polynomial(peak, lr_end, total - warmup, power=power))


def _build_constant(name, peak, warmup, total):
    from .schedules import Constant

    if warmup:
        raise ValueError(f"get_schedule('constant') takes no warmup (transformers ignores it), "
                         f"got warmup={warmup!r}; use 'constant_with_warmup'")
    return Constant(peak)


def _build_constant_with_warmup(name, peak, warmup, total):
    from .schedules import Constant

    return _warmed(warmup, Constant(peak))


def _build_inverse_sqrt(name, peak, warmup, total, timescale=None):
    from .durations import duration_arg
    from .schedules import InverseSqrt

    timescale = duration_arg("timescale", timescale, allow_none=True)
    if timescale is None and not warmup:
        timescale = 10_000  # transformers: num_warmup_steps or 10_000
    return InverseSqrt(peak, warmup, timescale=timescale)


def _build_cosine_warmup_with_min_lr(name, peak, warmup, total, num_cycles=0.5, min_lr=None,
                                     min_lr_rate=None, warmup_lr_rate=None):
    from . import _validate
    from .schedules import Cosine, Linear

    _need_total(name, warmup, total)
    low = _min_lr(name, peak, min_lr, min_lr_rate)
    if _num_cycles(num_cycles) != 0.5:
        raise ValueError(f"get_schedule({name!r}) supports num_cycles=0.5 only, got "
                         f"num_cycles={num_cycles!r}")
    warmup_lr_rate = _validate.number("warmup_lr_rate", warmup_lr_rate, allow_none=True)
    _plain_steps(name, warmup=warmup, total=total)
    # transformers: (t + 1) / w while t < w (or r + (1 - r) t / (w - 1) with warmup_lr_rate r),
    # then the cosine of (t - w + 1) / (T - w): it starts one step early, at t = w - 1.
    least = 1 if warmup_lr_rate is None else 2
    if warmup < least:
        raise ValueError(f"get_schedule({name!r}) needs warmup >= {least} step(s)"
                         f"{'' if warmup_lr_rate is None else ' with warmup_lr_rate'}, "
                         f"got warmup={warmup!r}")
    decay = Cosine(peak, low, total - warmup)
    if warmup == 1:
        return decay
    start = peak / warmup if warmup_lr_rate is None else warmup_lr_rate * peak
    return Linear(start, peak, warmup - 1) >> decay


def _build_warmup_stable_decay(name, peak, warmup, total, num_decay_steps=None,
                               num_stable_steps=None, warmup_type="linear", decay_type="cosine",
                               min_lr_ratio=0.0, num_cycles=0.5):
    import warnings

    from . import _validate
    from .durations import duration_arg, optional_duration_arg
    from .schedules import Polynomial, WarmupStableDecay

    if num_decay_steps is None:
        raise ValueError("get_schedule('warmup_stable_decay') needs num_decay_steps")
    decay = duration_arg("num_decay_steps", num_decay_steps)
    stable = None if num_stable_steps is None else \
        optional_duration_arg("num_stable_steps", num_stable_steps)
    if stable is None and total is None:
        raise ValueError("get_schedule('warmup_stable_decay') needs total or num_stable_steps")
    if stable is not None and total is not None:
        warnings.warn("get_schedule('warmup_stable_decay'): both total and num_stable_steps "
                      "given; num_stable_steps is used (as transformers does)", stacklevel=3)
        total = None
    warmup_type = _validate.choice("warmup_type", warmup_type, ("linear", "cosine", "1-sqrt"))
    decay_type = _validate.choice("decay_type", decay_type, ("linear", "cosine", "1-sqrt"))
    ratio = _validate.number("min_lr_ratio", min_lr_ratio, nonnegative=True)
    if ratio > 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
    if _num_cycles(num_cycles) != 0.5:
        raise ValueError(f"get_schedule({name!r}) supports num_cycles=0.5 only, got "
                         f"num_cycles={num_cycles!r}")
    low = ratio * peak
    if warmup_type == "linear":
        return WarmupStableDecay(peak, warmup, decay, stable=stable, total=total, start=low,
                                 end=low, decay_shape=decay_type)
    _plain_steps(name, f", warmup_type={warmup_type!r}", warmup=warmup, total=total,
                 num_decay_steps=decay, num_stable_steps=stable)
    tail = WarmupStableDecay(peak, 0, decay, stable=stable,
                             total=None if total is None else total - warmup, start=low,
                             end=low, decay_shape=decay_type)
    if not warmup:
        return tail
    if warmup_type == "cosine":
        return _warmed(warmup, tail, start=low, shape="cosine")
    # transformers' "1-sqrt" warmup, 1 - sqrt(1 - u), is a polynomial of power 1/2 towards peak
    return Polynomial(low, peak, warmup, power=0.5) >> tail


_BUILDERS = {
    "linear": _build_linear,
    "cosine": _build_cosine,
    "cosine_with_restarts": _build_cosine_with_restarts,
    "polynomial": _build_polynomial,
    "constant": _build_constant,
    "constant_with_warmup": _build_constant_with_warmup,
    "inverse_sqrt": _build_inverse_sqrt,
    "cosine_with_min_lr": _build_cosine_with_min_lr,
    "cosine_warmup_with_min_lr": _build_cosine_warmup_with_min_lr,
    "warmup_stable_decay": _build_warmup_stable_decay,
}
