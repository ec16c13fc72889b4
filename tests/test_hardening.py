"""Hardening: hostile arguments, hostile configs, very long runs, a run killed mid-way.

Blocks:

1. A bad-input table over every public name of ``stepsched`` and
   ``stepsched.callbacks``: each bad value, put on top of valid arguments, must
   raise ``ValueError``/``TypeError`` naming the argument, at construction.
   A public name missing from the table fails ``test_every_public_name_is_in_the_table``.
2. Configs from strangers: malformed, truncated, deeply nested, unknown or
   dangerous class names never execute anything and fail with a clear error.
3. Long runs: in-graph values at steps up to ``2**31 - 1`` (and int64 steps on
   TensorFlow) are finite and match ``schedule.at`` (float64 NumPy) to float32
   precision, for every schedule class (a catalogue that must cover them all).
4. A run killed after a checkpoint and resumed by ``BackupAndRestore``
   continues the exact rate sequence, plateau reductions included.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass, field

import keras
import numpy as np
import pytest

import stepsched as ss
import stepsched.callbacks as ssc
from stepsched.schedules.base import Schedule
from tests.conftest import BACKEND, graph_values
from tests.probe import mean_output, probe_data, probe_model, weight

NAN, INF = float("nan"), float("inf")
HUGE_INT = 10**400  # float(HUGE_INT) raises OverflowError
#: JAX without x64 evaluates in float32 in-graph (the step itself exact as int32)
JAX_F32 = BACKEND == "jax" and not __import__("jax").config.jax_enable_x64

# ----------------------------------------------------------------------------- known bugs
# An open defect is pinned as a strict xfail (see _known_bug and EXTREME_BUGS), so the
# case starts failing, and must be un-marked, once the fix lands.
#: 1e308 cases already refused by another rule (a floor above start, min > max, a sign)
CAUGHT_1E308 = {("Exponential", "end", 1e308), ("Clip", "min", 1e308), ("Clip", "max", -1e308),
                ("OneCycle", "max_lr", -1e308), ("Scaled", "multiplier", -1e308),
                ("Scaled", "multiplier", 1e308),  # a multiplier is at most 1
                ("WarmupCosine", "warmup", 1e308), ("WarmupStableDecay", "warmup", 1e308),
                ("WarmupStableDecay", "decay", 1e308)}  # longer than total
AS_SCHEDULE_ARGS = ("piece", "schedule")


@dataclass
class Case:
    valid: dict
    bad: list = field(default_factory=list)
    build: object = None  # defaults to the public name itself
    aliases: tuple = ()  # other names an error may use for the argument (e.g. the unit)


# --------------------------------------------------------------------- bad value families
def _real(arg, rate=True, none_ok=False):
    """Wrong for any real-valued argument (``rate``: the value is a learning rate)."""
    out = [(arg, NAN), (arg, INF), (arg, -INF), (arg, "0.1"), (arg, True), (arg, [0.1]),
           (arg, {"value": 0.1}), (arg, np.ones(2)), (arg, HUGE_INT)]
    if not none_ok:
        out.append((arg, None))
    if rate:
        out += [(arg, 1e308), (arg, -1e308)]
    return out


def _positive(arg, rate=True, none_ok=False):
    return _real(arg, rate, none_ok) + [(arg, 0), (arg, 0.0), (arg, -1.0)]


def _duration(arg, none_ok=False, zero_ok=False):
    """Wrong for a duration (steps, or a Duration)."""
    out = [(arg, NAN), (arg, INF), (arg, "10"), (arg, True), (arg, False), (arg, [10]),
           (arg, np.ones(2)), (arg, -1), (arg, -0.5), (arg, HUGE_INT), (arg, "epochs(2)"),
           (arg, 1e308)]  # beyond float32: in-graph on JAX the duration would be inf
    if not zero_ok:
        out.append((arg, 0))
    if not none_ok:
        out.append((arg, None))
    return out


def _integer(arg, none_ok=False, huge=True):
    out = [(arg, 1.5), (arg, "3"), (arg, True), (arg, NAN), (arg, 0), (arg, -1), (arg, [3])]
    if huge:
        out.append((arg, HUGE_INT))
    if not none_ok:
        out.append((arg, None))
    return out


def _choice(arg):
    return [(arg, "nope"), (arg, ""), (arg, 1), (arg, None), (arg, ["linear"])]


def _boolean(arg):
    return [(arg, 1), (arg, 0), (arg, "True"), (arg, None), (arg, 1.0)]


def _schedule(arg):
    return [(arg, "0.1"), (arg, None), (arg, []), (arg, {"class_name": "Constant"}),
            (arg, keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)),
            (arg, lambda step: 0.1), (arg, NAN), (arg, True)]


def _knots(b="boundaries", v="values", extra=1, n=2):
    """Wrong for a (boundaries, values) pair; ``extra``: len(values) - len(boundaries),
    ``n``: the number of boundaries in the valid arguments."""
    return [(v, [0.1] * (n + extra + 1)), (v, [0.1] * (n + extra - 1)),(b, "abc"), (b, []), (b, [NAN]), (b, ["10"]), (b, [True]), (b, [[10]]),
            (b, [10, 10]), (b, [20, 10]), (b, [-1]), (b, 10), (b, None), (b, [HUGE_INT]),
            (v, "ab"), (v, []), (v, [NAN] * (extra + 1)),
            (v, ["0.1"] * (extra + 1)), (v, [True] * (extra + 1)), (v, None), (v, 0.1),
            (v, [1e308] * (n + extra))]


def _keras_steps(arg):
    """Wrong for a Keras number of steps (1e308 is not: Keras takes it, as float32's max)."""
    return [c for c in _duration(arg) if not (isinstance(c[1], float) and c[1] == 1e308)]


def _name(arg="name"):
    return [(arg, 123), (arg, None), (arg, ["x"])]


LIN = ss.Linear(1.0, 0.0, 10)


def _compiled_model():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(ss.Constant(0.1)), loss="mse")
    return model

CONST = ss.Constant(0.5)

TABLE: dict[str, Case] = {
    # durations
    # (a duration's error names its unit, as the user wrote it: "epochs must be > 0")
    "Duration": Case({"unit": "steps", "value": 3},
                     _choice("unit") + _positive("value", rate=False)
                     + [("per", 2.0), ("per", NAN)],  # tokens_per_sample: tokens(...) only
                     aliases=("steps",)),
    "samples": Case({"n": 100}, _positive("n", rate=False), aliases=("samples",)),
    "tokens": Case({"n": 1000, "tokens_per_sample": 10},
                   _positive("n", rate=False) + _positive("tokens_per_sample", rate=False),
                   aliases=("tokens",)),
    "steps": Case({"n": 3}, _positive("n", rate=False), aliases=("steps",)),
    "epochs": Case({"n": 2}, _positive("n", rate=False), aliases=("epochs",)),
    "fraction": Case({"p": 0.5}, _positive("p", rate=False) + [("p", 1.5)],
                     aliases=("fraction",)),
    # primitives
    "Constant": Case({"value": 0.1}, _real("value") + _duration("duration", none_ok=True)),
    "Linear": Case({"start": 1.0, "end": 0.0, "duration": 10},
                   _real("start") + _real("end") + _duration("duration")),
    "Cosine": Case({"start": 1.0, "end": 0.0, "duration": 10},
                   _real("start") + _real("end") + _duration("duration")
                   + _positive("exponent", rate=False)),
    "Exponential": Case({"start": 1.0, "rate": 0.9},
                        _real("start") + _positive("rate", rate=False) + _duration("every")
                        + _boolean("staircase") + _real("limit", none_ok=True)
                        + _duration("duration", none_ok=True)
                        + [("rate", 1.5), ("limit", 2.0)]),
    "Polynomial": Case({"start": 1.0, "end": 0.0, "duration": 10},
                       _real("start") + _real("end") + _duration("duration")
                       + _positive("power", rate=False)),
    "Piecewise": Case({"boundaries": [10, 20], "values": [1.0, 0.5, 0.1]},
                      _knots() + _duration("duration", none_ok=True)),
    "Interpolate": Case({"boundaries": [0, 10], "values": [1.0, 0.5]},
                        _knots(extra=0) + _choice("kind")),
    # composition
    "Sequence": Case({"pieces": [LIN, CONST]},
                     [("pieces", []), ("pieces", "ab"), ("pieces", LIN), ("pieces", None),
                      ("pieces", [CONST, LIN]),
                      ("pieces", [LIN, "0.1"]), ("pieces", [LIN, NAN]), ("pieces", [LIN, None])]
                     + _boolean("relative"), aliases=("piece",)),
    "Planned": Case({"schedule": LIN},
                    _schedule("schedule") + _positive("steps_per_epoch", rate=False, none_ok=True)
                    + _positive("total_steps", rate=False, none_ok=True)
                    + _positive("batch_size", rate=False, none_ok=True)
                    + [("schedule", ss.Linear(1.0, 0.0, ss.fraction(1.0))),  # unresolvable
                       ("previous", LIN), ("previous", "x"),
                       ("since", 3), ("policy", "continue")]),  # a change needs previous
    "Warmup": Case({"duration": 5}, _duration("duration") + _real("start", rate=False)
                   + _choice("shape")
                   + [("shape", "exponential")],  # exponential with start=0
                   build=lambda **kw: ss.Warmup(**kw) >> ss.Constant(0.5)),
    "Restarts": Case({"piece": LIN}, _schedule("piece") + [("piece", CONST)]
                     + _positive("period_mult", rate=False) + [("period_mult", 0.5)]
                     + _real("scale", rate=False) + [("scale", -0.5)]
                     + _integer("limit", none_ok=True)),
    "Affine": Case({"schedule": LIN}, _schedule("schedule") + _real("scale") + _real("offset")),
    "Clip": Case({"schedule": LIN, "min": 0.1, "max": 0.9},
                 _schedule("schedule") + _real("min", none_ok=True) + _real("max", none_ok=True)
                 + [("min", 0.95)]),
    "PerUpdate": Case({"schedule": LIN, "accumulation_steps": 4},
                      _schedule("schedule") + _integer("accumulation_steps")),
    # Keras counterparts: refused only where Keras raises or its value is non-finite
    # (tests/test_conformance_keras.py draws from Keras's whole domain); a float number of
    # steps past float32's range is taken, as Keras takes it
    "ExponentialDecay": Case({"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9},
                             _real("initial_learning_rate") + _keras_steps("decay_steps")
                             + _real("decay_rate", rate=False)
                             + [("decay_rate", -0.5)]  # NaN without staircase
                             + _boolean("staircase") + _name()),
    "PiecewiseConstantDecay": Case({"boundaries": [10, 20], "values": [1.0, 0.5, 0.1]},
                                   [c for c in _knots() if c[0] != "boundaries"
                                    or c[1] not in ([10, 10], [20, 10], [-1])]  # Keras takes
                                   + _name()),
    "PolynomialDecay": Case({"initial_learning_rate": 0.1, "decay_steps": 10},
                            _real("initial_learning_rate") + _keras_steps("decay_steps")
                            + _real("end_learning_rate") + _real("power", rate=False)
                            + [("power", -1.0)]  # inf at the end
                            + _boolean("cycle") + _name()),
    "InverseTimeDecay": Case({"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5},
                             _real("initial_learning_rate") + _keras_steps("decay_steps")
                             + _real("decay_rate", rate=False)
                             + [("decay_rate", -0.5)]  # 1 + r * p = 0 at step 20
                             + _boolean("staircase") + _name()),
    "CosineDecay": Case({"initial_learning_rate": 0.1, "decay_steps": 10},
                        _real("initial_learning_rate") + _keras_steps("decay_steps")
                        + _real("alpha", rate=False) + _real("warmup_target", none_ok=True)
                        + [c for c in _keras_steps("warmup_steps") if c[1] is not None
                           and not (isinstance(c[1], (int, float)) and -1 <= c[1] <= 0)]
                        + _name()),
    "CosineDecayRestarts": Case({"initial_learning_rate": 0.1, "first_decay_steps": 10},
                                _real("initial_learning_rate") + _keras_steps("first_decay_steps")
                                + _positive("t_mul", rate=False)
                                + [("t_mul", 0.5)]  # NaN once the shrinking cycles run out
                                + _real("m_mul", rate=False) + _real("alpha", rate=False)
                                + _name()),
    # recipes
    "OneCycle": Case({"max_lr": 0.1, "total_steps": 100},
                     _positive("max_lr") + _duration("total_steps")
                     + _real("pct_start", rate=False) + [("pct_start", 0.0), ("pct_start", 1.0)]
                     + _choice("anneal_strategy") + _positive("div_factor", rate=False)
                     + _positive("final_div_factor", rate=False) + _boolean("three_phase")
                     + [("total_steps", 2)]),
    "OneCycleMomentum": Case({"total_steps": 100},
                             _duration("total_steps") + _real("pct_start", rate=False)
                             + _choice("anneal_strategy") + _real("base_momentum")
                             + _real("max_momentum") + _boolean("three_phase")),
    "Cyclic": Case({"low": 0.01, "high": 0.1, "up": 10},
                   _real("low") + _real("high") + _duration("up") + _duration("down", none_ok=True)
                   + _choice("mode") + _positive("gamma", rate=False) + [("gamma", 1.5)]),
    "WarmupCosine": Case({"peak": 0.1, "warmup": 10, "total": 100},
                         _real("peak") + _duration("warmup", zero_ok=True) + _duration("total")
                         + _real("start") + _real("end") + _positive("exponent", rate=False)
                         + [("total", 10), ("warmup", 200)]),
    "WarmupStableDecay": Case({"peak": 0.1, "warmup": 10, "decay": 20, "total": 100},
                              _real("peak") + _duration("warmup", zero_ok=True)
                              + _duration("decay") + _duration("total", none_ok=True)
                              + [("stable", 10)]  # both stable and total
                              + _real("start") + _real("end") + _choice("decay_shape")
                              + [("total", 20), ("decay_shape", "exponential")]),
    "InverseSqrt": Case({"peak": 0.1, "warmup": 10},
                        _real("peak") + _duration("warmup", zero_ok=True)
                        + _duration("timescale", none_ok=True)),
    "Noam": Case({"d_model": 512, "warmup": 100},
                 _positive("d_model", rate=False) + _duration("warmup") + [("warmup", 0.5)]
                 + _positive("scale", rate=False)),
    "InversePower": Case({"start": 0.1, "timescale": 10},
                         _real("start") + _duration("timescale")
                         + _positive("power", rate=False)),
    "SqrtDecay": Case({"start": 0.1, "end": 0.0, "duration": 10},
                      _real("start") + _real("end") + _duration("duration")),
    "KDecay": Case({"start": 0.1, "end": 0.0, "duration": 10},
                   _real("start") + _real("end") + _duration("duration")
                   + _positive("k", rate=False) + _choice("shape")),
    "TanhDecay": Case({"start": 0.1, "end": 0.0, "duration": 10},
                      _real("start") + _real("end") + _duration("duration")
                      + _real("lower", rate=False) + _real("upper", rate=False)
                      + [("lower", 5.0)]),
    "Rex": Case({"start": 0.1, "end": 0.0, "duration": 10},
                _real("start") + _real("end") + _duration("duration")),
    # transformers' names (more cases: tests/test_names.py)
    "get_schedule": Case({"name": "cosine", "peak": 0.1, "warmup": 10, "total": 100},
                         _choice("name") + _positive("peak") + _duration("warmup", zero_ok=True)
                         + _duration("total") + [("total", 10), ("num_cycles", 0),
                                                 ("num_cycles", NAN), ("min_lr", 1e-3)],
                         aliases=("num_warmup_steps", "num_training_steps")),
    # finder result and plotting
    "LRFinderResult": Case({"lrs": [1e-3, 1e-2, 1e-1], "losses": [1.0, 0.5, 2.0]},
                           [("lrs", [1e-3]), ("lrs", "abc"), ("lrs", [NAN, 1e-2, 1e-1]),
                            ("lrs", ["a", "b", "c"]), ("losses", ["a", "b", "c"]),
                            ("losses", [1.0]), ("smoothing", 1.0), ("smoothing", NAN),
                            ("smoothing", "0.9"), ("smoothing", True),
                            ("stopped_early", "no"), ("stop_reason", "whatever")]),
    "plot_schedule": Case({"schedule": LIN, "total_steps": 20},
                          [("schedule", "x"), ("schedule", None), ("total_steps", NAN),
                           ("total_steps", "10"), ("total_steps", True), ("total_steps", 0),
                           ("total_steps", -5), ("total_steps", HUGE_INT),
                           ("steps_per_epoch", 0), ("steps_per_epoch", "3")]),
    "plot_schedules": Case({"schedules": {"a": LIN}, "total_steps": 20},
                           [("schedules", {}), ("schedules", [LIN]), ("schedules", None),
                            ("total_steps", NAN), ("total_steps", "10"), ("total_steps", 0),
                            ("steps_per_epoch", -1.0)]),
    "plot_lr_finder": Case({"result": ss.LRFinderResult([1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0]),
                            "schedule": LIN, "total_steps": 20},
                           [("result", "x"), ("result", None), ("schedule", "x"),
                            ("total_steps", NAN), ("total_steps", -5), ("steps_per_epoch", 0),
                            ("method", "nope"), ("method", None)]),
    "plot_reductions": Case({"schedule": LIN, "reductions": [(5, 0.5)], "total_steps": 20},
                            [("schedule", "x"), ("schedule", None), ("reductions", "x"),
                             ("reductions", [(5, -0.5)]), ("reductions", [("a", 0.5)]),
                             ("total_steps", NAN), ("total_steps", -5),
                             ("steps_per_epoch", 0), ("min_lr", -1.0), ("min_lr", NAN)]),
    # callbacks
    "StepschedCallback": Case({}),
    "Plan": Case({}, _choice("on_change")),
    "LearningRateLogger": Case({}, _choice("every")),
    "BatchLearningRateScheduler": Case({"schedule": lambda step: 0.1},
                                       [("schedule", 0.1), ("schedule", "0.1"),
                                        ("schedule", None), ("schedule", lambda: 0.1),
                                        ("schedule", lambda a, b, c: 0.1)]
                                       + [("verbose", 1.5), ("verbose", "3"), ("verbose", -1)] + _boolean("allow_coarse")),
    "ReduceLROnPlateau": Case({}, [("monitor", ""), ("monitor", 3), ("monitor", None)]
                              + _integer("every", none_ok=True, huge=False)
                              + [("every", 5), ("monitor", "val_loss")]  # val_ with every
                              + _real("factor", rate=False) + [("factor", 0.0), ("factor", 1.0)]
                              + _integer("patience", huge=False)[:4] + [("patience", -1)]
                              + _choice("mode") + _real("min_delta", rate=False)
                              + [("min_delta", -1.0)] + _choice("threshold_mode")
                              + [("cooldown", -1), ("cooldown", 1.5)]
                              + _real("min_lr", rate=False) + [("min_lr", -1.0)]
                              + [("smoothing", 0.5), ("smoothing", NAN), ("smoothing", "0.5")]
                              + [("verbose", -1), ("verbose", "1")]),
    "HyperparameterScheduler": Case({"name": "momentum", "schedule": lambda step: 0.9},
                                    [("name", ""), ("name", "not an identifier"), ("name", 3),
                                     ("name", None), ("schedule", LIN), ("schedule", 0.9),
                                     ("schedule", None), ("schedule", "0.1"),
                                     ("schedule", lambda: 0.1),
                                     ("schedule", lambda a, b, c: 0.1)]),
    "Scaled": Case({"schedule": LIN},
                   _schedule("schedule") + _real("multiplier") + [("multiplier", -1.0)]
                   + _real("min_lr", rate=False) + [("min_lr", -1.0)]
                   + [("state", [1, 2]), ("state", {"best": "x"}), ("state", "best")]),
    "Cooldown": Case({"schedule": LIN, "duration": 10, "start_step": 4},
                     _schedule("schedule") + _duration("duration") + _choice("shape")
                     + _real("end") + [("start_step", 1.5), ("start_step", "3"),
                                       ("start_step", True), ("start_step", -1),
                                       ("start_step", 2**31), ("start_step", HUGE_INT)]),
    "BatchScaled": Case({"schedule": LIN, "base_batch_size": 256, "batch_size": 512},
                        _schedule("schedule") + _integer("base_batch_size") + _choice("rule")
                        + _integer("batch_size", none_ok=True)),
    "Extended": Case({"schedule": LIN, "then": CONST, "at": 12},
                     _schedule("schedule") + _schedule("then")
                     + [("at", -1), ("at", 1.5), ("at", "3"), ("at", True), ("at", None),
                        ("at", 2**31), ("at", HUGE_INT)]),
    "extend": Case({"schedule": LIN}, _schedule("schedule")
                   + [("at", -1), ("at", 1.5), ("at", "3"), ("at", True), ("at", HUGE_INT),
                      ("model", None), ("model", "model"), ("model", 3)],
                   build=lambda **kw: ss.extend(**{"model": _compiled_model(), **kw})),
    "CooldownOnDemand": Case(
        {"duration": 10},
        _duration("duration") + [("duration", ss.fraction(0.5))] + _choice("shape")
        + _real("end") + [(a, v) for a in ("at_step", "budget_steps", "budget_samples")
                          for v in (1.5, "3", True, -1, HUGE_INT)]
        + _positive("budget_seconds", rate=False, none_ok=True)
        + [("monitor", ""), ("monitor", 3), ("patience", -1), ("patience", 1.5),
           ("min_delta", -1.0), ("min_delta", NAN)] + _choice("mode")
        + [("every", 0), ("every", 1.5), ("every", 4),  # every without monitor
           ("file", 3), ("file", ""), ("signal", 10**6), ("signal", "SIGUSR1"),
           ("signal", True), ("signal", 9), ("batch_size", 0), ("batch_size", 2.5)]
        + _boolean("stop") + [("verbose", -1), ("verbose", "1")]),
}

# Combinations that only make sense together (the table entry's extra value needs a partner).
_PARTNERS = {
    ("Exponential", "end", 2.0): {},  # a floor above start when rate < 1
    ("Exponential", "rate", 1.5): {},  # grows without bound: no end, no duration
    ("ReduceLROnPlateau", "every", 5): {"monitor": "val_loss"},
    ("ReduceLROnPlateau", "monitor", "val_loss"): {"every": 5},
    ("ReduceLROnPlateau", "smoothing", 0.5): {},  # smoothing without every
    ("Clip", "min", 0.95): {},  # min > max
    ("Cyclic", "gamma", 1.5): {"mode": "exp_range"},
}

NOT_CONSTRUCTORS = {
    "callbacks": "a module (its names are in stepsched.callbacks.__all__)",
    "optimizers": "a module: its bad input is tested in tests/test_hyperparams.py and "
                  "tests/test_groups.py",
    "Schedule": "abstract base class: subclasses write _formula",
    "Recipe": "abstract base class: subclasses write build()",
    "UnresolvedDurationError": "an exception type",
    "find_lr": "needs a model: see test_find_lr_rejects_bad_arguments",
    "parse": "takes text: see test_parse_refuses_with_a_one_line_message (tests/test_names.py)",
    "SpecError": "an exception type",
}


def _public():
    for module in (ss, ssc):
        for name in module.__all__:
            yield name, getattr(module, name)


def _known_bug(name: str, arg: str, value) -> str | None:
    """The reported defect behind a failing table case, if any (none open at present)."""
    return None


def _label(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value == HUGE_INT:
        return "10**400"
    if callable(value) and not isinstance(value, Schedule):
        return "callable"
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


#: table cases whose construction reaches Keras's backend (a compiled model, a variable):
#: (name, argument), None for every argument; the rest are backend_independent
ON_THE_BACKEND = {("extend", None), ("Scaled", "state")}
#: entries whose valid arguments build a Keras variable or model
VALID_ON_THE_BACKEND = {"extend", "Cooldown", "Scaled", "plot_reductions"}


def _bad_cases():
    for name, case in TABLE.items():
        for arg, value in case.bad:
            reason = _known_bug(name, arg, value)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            if not {(name, None), (name, arg)} & ON_THE_BACKEND:
                marks.append(pytest.mark.backend_independent)
            yield pytest.param(name, arg, value, id=f"{name}-{arg}={_label(value)}", marks=marks)


def _build(public: str, /, **kwargs):
    case = TABLE[public]
    build = case.build or getattr(ss, public, None) or getattr(ssc, public)
    return build(**kwargs)


# ------------------------------------------------------------------ the table
@pytest.mark.backend_independent
def test_every_public_name_is_in_the_table():
    missing = [name for name, _ in _public() if name not in TABLE and name not in NOT_CONSTRUCTORS]
    assert not missing, (f"public names without a bad-input table entry in "
                         f"tests/test_hardening.py: {missing}")
    stale = [name for name in TABLE if not hasattr(ss, name) and not hasattr(ssc, name)]
    assert not stale, f"table entries that are no longer public: {stale}"


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[] if n in VALID_ON_THE_BACKEND else [pytest.mark.backend_independent])
    for n in sorted(TABLE)])
def test_valid_arguments_construct(name):
    obj = _build(name, **TABLE[name].valid)
    if isinstance(obj, Schedule):
        assert np.all(np.isfinite(obj.at(range(50))))
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize(("name", "arg", "value"), list(_bad_cases()))
def test_bad_argument_is_refused_at_construction(name, arg, value):
    kwargs = dict(TABLE[name].valid)
    for (n, a, v), extra in _PARTNERS.items():
        if (n, a) == (name, arg) and type(v) is type(value) and v == value:
            kwargs.update(extra)
    kwargs[arg] = value
    try:
        with pytest.raises((ValueError, TypeError)) as info:
            _build(name, **kwargs)
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")
    message = str(info.value)
    names = (arg, *TABLE[name].aliases)
    assert any(n in message for n in names), f"the error does not name {arg!r}: {message}"


@pytest.mark.backend_independent
def test_table_covers_every_argument():
    """Each constructor argument has at least one bad value in the table."""
    gaps = []
    for name, case in TABLE.items():
        target = getattr(ss, name, None) or getattr(ssc, name)
        params = inspect.signature(target).parameters
        tried = {arg for arg, _ in case.bad}
        for p in params.values():
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in ("self", "ax", "log",
                                                                         "label"):
                continue
            if p.name not in tried:
                gaps.append(f"{name}.{p.name}")
    assert not gaps, f"arguments with no bad value in the table: {gaps}"


def test_huge_durations_are_accepted_and_stay_finite():
    """A duration of 1e30 steps (never reached, yet within float32) is accepted, and every
    value is finite in-graph too. (Beyond float32, 1e308, is refused: see the table.)"""
    for schedule in (ss.Linear(1.0, 0.0, 1e30), ss.Cosine(1.0, 0.0, 1e30),
                     ss.Warmup(1e30) >> ss.Constant(1.0), ss.Restarts(ss.Linear(1.0, 0.0, 1e30)),
                     ss.Restarts(ss.Linear(1.0, 0.0, 1e30), period_mult=2.0),
                     ss.Cyclic(0.1, 1.0, 1e30), ss.InverseSqrt(1.0, 1e30),
                     ss.Exponential(1.0, 0.5, every=1e30), ss.Piecewise([1e30], [1.0, 2.0]),
                     ss.WarmupCosine(1.0, 10, 1e30), ss.PerUpdate(ss.Constant(1.0), 2**31 - 1)):
        values = schedule.at([0, 1, 10**6, 2**31 - 1])
        assert np.all(np.isfinite(values)), schedule
        assert np.all(np.isfinite(graph_values(schedule, [0, 1, 10**6, 2**31 - 1]))), schedule


EXTREME = {
    "Warmup(exponential, start=1e-320)":
        lambda: ss.Warmup(10, start=1e-320, shape="exponential") >> ss.Constant(1.0),
    "Warmup(exponential, 1e-30 -> 1e30)":
        lambda: ss.Warmup(10, start=1e-30, shape="exponential") >> ss.Constant(1e30),
    "TanhDecay(lower=-1e300, upper=1e300)":
        lambda: ss.TanhDecay(1.0, 0.0, 10, lower=-1e300, upper=1e300),
    "TanhDecay(lower=-3e38, upper=3e38)":
        lambda: ss.TanhDecay(1.0, 0.0, 10, lower=-3e38, upper=3e38),
    "Noam(d_model=1e-300)": lambda: ss.Noam(1e-300, 10),
    "OneCycle(div_factor=1e-30)": lambda: ss.OneCycle(3e38, 100, div_factor=1e-30),
    "InversePower(timescale=1e-30, power=1e30)":
        lambda: ss.InversePower(1.0, 1e-30, power=1e30),
    "Linear(-3e38 -> 3e38)": lambda: ss.Linear(-3e38, 3e38, 10),
    "Exponential(rate=2, duration=1000)": lambda: ss.Exponential(1.0, 2.0, duration=1000),
    "Restarts(scale=2)": lambda: ss.Restarts(ss.Linear(1.0, 0.5, 1), scale=2.0),
}
EXTREME_BUGS: dict[str, str] = {}  # name -> open defect (strict xfail); none at present


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.xfail(strict=True, reason=EXTREME_BUGS[n])]
                 if n in EXTREME_BUGS else []) for n in EXTREME])
def test_extreme_finite_arguments_are_refused_or_stay_finite(name):
    """Arguments within float32 but at its edges: refused at construction, or every value
    (host and in-graph, up to step 2**31 - 1) is finite."""
    try:
        schedule = EXTREME[name]()
    except (ValueError, TypeError):
        return
    steps = [0, 1, 2, 5, 10, 100, 1000, 10**6, 2**31 - 1]
    # no error at construction: evaluating must not raise either (the arguments were accepted)
    assert np.all(np.isfinite(schedule.at(steps))), schedule.at(steps)
    assert np.all(np.isfinite(graph_values(schedule, steps))), schedule


@pytest.mark.skipif(not hasattr(ss, "find_lr"), reason="stepsched.find_lr is not public yet")
def test_find_lr_rejects_bad_arguments():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((8, 2), "float32")
    y = np.zeros((8, 1), "float32")
    bad = [("start", 0.0), ("start", NAN), ("start", "1e-3"), ("start", True), ("end", -1.0),
           ("end", INF), ("end", 1e-9), ("steps", 1), ("steps", 2.5), ("steps", "10"),
           ("steps", True), ("mode", "cubic"), ("smoothing", 1.0), ("smoothing", NAN),
           ("diverge", 1.0), ("diverge", "4"), ("batch_size", 0), ("batch_size", 1.5),
           ("verbose", -1)]
    for arg, value in bad:
        with pytest.raises((ValueError, TypeError), match=arg):
            ss.find_lr(model, x, y, verbose=0, **{arg: value})
    with pytest.raises(TypeError, match="model"):
        ss.find_lr("not a model", x, y)
    uncompiled = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="compiled"):
        ss.find_lr(uncompiled, x, y)
    with pytest.raises(ValueError, match="same length"):
        ss.find_lr(model, x, y[:3], steps=4, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        ss.find_lr(model, x[:0], y[:0], steps=4, verbose=0)


# ------------------------------------------------------------------ configs from strangers
def _load(config):
    return keras.saving.deserialize_keras_object(config)


MARKER_CMD = "touch {marker}"

HOSTILE = {
    "os.system": lambda m: {"module": "os", "class_name": "system", "config": {"command": m}},
    "os>system": lambda m: {"module": "os", "class_name": "function", "config": m,
                            "registered_name": "system"},
    "builtins>eval": lambda m: {"class_name": "builtins>eval",
                                "config": {"source": f"open({m!r}, 'w')"}},
    "builtins.eval fn": lambda m: {"module": "builtins", "class_name": "function",
                                   "config": "eval", "registered_name": "eval"},
    "__import__": lambda m: {"module": "builtins", "class_name": "function",
                             "config": "__import__", "registered_name": "__import__"},
    "subprocess": lambda m: {"module": "subprocess", "class_name": "Popen",
                             "config": {"args": ["touch", m]}},
    "outside module": lambda m: {"module": "pathlib", "class_name": "Path",
                                 "config": {"args": m}},
    "lambda": lambda m: {"class_name": "__lambda__",
                         "config": {"code": f"lambda *a: open({m!r}, 'w')", "defaults": None,
                                    "closure": None}},
    "keras function": lambda m: {"module": "keras.ops", "class_name": "function",
                                 "config": "exp", "registered_name": None},
}


@pytest.mark.parametrize("where", ["top", "piece", "pieces[1]", "duration"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_config_runs_nothing(tmp_path, kind, where):
    """Dangerous class names fail with a clear error, and nothing they name is executed."""
    marker = str(tmp_path / "executed")
    evil = HOSTILE[kind](MARKER_CMD.format(marker=marker) if "system" in kind else marker)
    if where == "top":
        config = evil
    elif where == "piece":
        config = {"class_name": "stepsched>Restarts", "config": {"piece": evil}}
    elif where == "pieces[1]":
        config = {"class_name": "stepsched>Sequence",
                  "config": {"pieces": [keras.saving.serialize_keras_object(LIN), evil]}}
    else:
        config = {"class_name": "stepsched>Linear",
                  "config": {"start": 1.0, "end": 0.0, "duration": evil}}
    config = json.loads(json.dumps(config))  # as read from a file
    if kind == "keras function" and where == "top":
        # a reference to a Keras function is returned, as Keras documents, but not called
        result = _load(config)
        assert result is keras.ops.exp
    else:
        with pytest.raises((ValueError, TypeError)):
            _load(config)
    assert not os.path.exists(marker)


def _nested_affine(levels: int) -> dict:
    config = keras.saving.serialize_keras_object(ss.Constant(0.5))
    for _ in range(levels):
        config = {"class_name": "stepsched>Affine", "config": {"schedule": config}}
    return config


def _nested(levels: int, leaf=1.0, dicts=False):
    value = leaf
    for _ in range(levels):
        value = {"x": value} if dicts else [value]
    return value


@pytest.mark.parametrize("levels", [1000, 100_000])
def test_deeply_nested_config_is_refused(levels):
    deep = [_nested_affine(levels),
            {"class_name": "stepsched>Piecewise",
             "config": {"boundaries": _nested(levels), "values": [1.0]}},
            {"class_name": "stepsched>Linear",
             "config": {"start": _nested(levels, dicts=True), "end": 0.0, "duration": 10}},
            {"class_name": "stepsched>Sequence", "config": {"pieces": _nested(levels)}}]
    for config in deep:
        with pytest.raises(ValueError, match="nested"):
            _load(config)
        with pytest.raises(ValueError, match="nested"):
            getattr(ss, config["class_name"].split(">")[1]).from_config(config["config"])


def test_nesting_limit_leaves_room_for_real_compositions():
    """Twenty levels of composition (far more than any real schedule) load fine."""
    schedule = ss.Constant(0.5)
    for _ in range(20):
        schedule = ss.Affine(ss.Sequence([ss.Linear(1.0, 0.5, 3), schedule]), scale=1.0,
                             offset=0.0)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    back = _load(config)
    np.testing.assert_array_equal(back.at(range(200)), schedule.at(range(200)))


MALFORMED = {
    "truncated piece": {"class_name": "stepsched>Sequence",
                        "config": {"pieces": [{"class_name": "Linear"}]}},
    "missing argument": {"class_name": "stepsched>Linear", "config": {"start": 1.0}},
    "unknown key": {"class_name": "stepsched>Linear",
                    "config": {"start": 1.0, "end": 0.0, "duration": 10, "evil": 1}},
    "string for number": {"class_name": "stepsched>Linear",
                          "config": {"start": "1.0", "end": 0.0, "duration": 10}},
    "NaN from JSON": {"class_name": "stepsched>Constant", "config": {"value": NAN}},
    "config is a list": {"class_name": "stepsched>Linear", "config": [1.0, 0.0, 10]},
    "config is a string": {"class_name": "stepsched>Linear", "config": "1.0, 0.0, 10"},
    "config is null": {"class_name": "stepsched>Linear", "config": None},
    "unknown class": {"class_name": "stepsched>NoSuchSchedule", "config": {}},
    "abstract base": {"class_name": "stepsched>Schedule", "config": {}},
    "class_name is a number": {"class_name": 3, "config": {}},
    "Duration unknown unit": {"class_name": "stepsched>Linear",
                              "config": {"start": 1.0, "end": 0.0, "duration": {
                                  "class_name": "stepsched>Duration",
                                  "config": {"unit": "weeks", "value": 1}}}},
    "Duration missing value": {"class_name": "stepsched>Linear",
                               "config": {"start": 1.0, "end": 0.0, "duration": {
                                   "class_name": "stepsched>Duration", "config": {}}}},
    "Duration as a piece": {"class_name": "stepsched>Restarts",
                            "config": {"piece": {"class_name": "stepsched>Duration",
                                                 "config": {"unit": "steps", "value": 3}}}},
    "Keras layer as a piece": {"class_name": "stepsched>Restarts",
                               "config": {"piece": {"module": "keras.layers", "class_name": "Dense",
                                                    "config": {"units": 2},
                                                    "registered_name": None}}},
    "wrong type inside a list": {"class_name": "stepsched>Piecewise",
                                 "config": {"boundaries": [10, "20"], "values": [1, 2, 3]}},
    "dict inside a list": {"class_name": "stepsched>Piecewise",
                           "config": {"boundaries": [10, {"a": 1}], "values": [1, 2, 3]}},
    "pieces is a dict": {"class_name": "stepsched>Sequence", "config": {"pieces": {"a": 1}}},
    "string for a bool": {"class_name": "stepsched>ExponentialDecay",
                             "config": {"initial_learning_rate": 0.1, "decay_steps": 10,
                                        "decay_rate": 0.9, "staircase": "yes"}},
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_config_raises_a_clear_error(kind):
    config = json.loads(json.dumps(MALFORMED[kind]))
    with pytest.raises((ValueError, TypeError)):
        _load(config)


@pytest.mark.parametrize("text", ['{"class_name": "stepsched>Linear", "config": {"start": 1.0, ',
                                  '{"class_name": "stepsched>Linear", "config": {"start": NaN, '
                                  '"end": 0, "duration": 10}}',
                                  '{"class_name": "stepsched>Linear", "config": {"start": '
                                  'Infinity, "end": 0, "duration": 10}}',
                                  '{"class_name": "stepsched>Linear", "config": {"start": 1e999, '
                                  '"end": 0, "duration": 10}}'])
@pytest.mark.backend_independent
def test_truncated_or_non_finite_json_text(text):
    """From text to schedule: the JSON parser or the loader refuses."""
    with pytest.raises((ValueError, TypeError)):
        _load(json.loads(text))


@pytest.mark.parametrize("text", ["[]", "null", "7", '"Linear"', '{"config": {"value": 1}}'])
@pytest.mark.backend_independent
def test_plain_json_is_returned_as_data(text):
    """Keras's passthrough: JSON without a registered class name comes back unchanged (it
    can never become a schedule or run anything)."""
    assert _load(json.loads(text)) == json.loads(text)


def test_piecewise_with_a_million_boundaries_loads_and_is_exact():
    """Decision: large knot lists are accepted, nothing truncated or approximated; the cost
    is linear in their length (about 1 s per million knots to validate and evaluate on the
    host; in-graph one searchsorted). Measured caveat, documented in
    docs/guide/guarantees.md: TensorFlow's XLA compiler takes ~0.3 ms per knot to compile
    the constant table (10**4 knots: 3 s, 10**6: over 5 minutes), so on TensorFlow this
    test evaluates in a plain (non-XLA) tf.function."""
    n = 10**6
    config = {"class_name": "stepsched>Piecewise",
              "config": {"boundaries": list(range(1, n + 1)),
                         "values": [float(i % 7) for i in range(n + 1)]}}
    schedule = _load(config)
    steps = [0, 1, 2, 999_999, 10**6, 10**6 + 5, 2**31 - 1]
    expected = np.array([min(s, n) % 7 for s in steps], np.float32)
    np.testing.assert_array_equal(schedule.at(steps), expected)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        got = tf.function(lambda s: schedule(s), jit_compile=False)(tf.constant(steps))
        got = keras.ops.convert_to_numpy(got)
    else:
        got = graph_values(schedule, steps)
    np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------ long runs
def _catalogue() -> dict[str, Schedule]:
    """One or more non-trivial instances of every schedule class (built from the table's
    valid arguments, plus periodic and past-the-end variants)."""
    out = {}
    for name, case in TABLE.items():
        obj = getattr(ss, name, None) or getattr(ssc, name, None)
        if inspect.isclass(obj) and issubclass(obj, Schedule):
            out[name] = _build(name, **case.valid)
    out.update({
        "Restarts(m=1)": ss.Restarts(ss.Cosine(1.0, 0.1, 7)),
        "Restarts(m=2, scale)": ss.Restarts(ss.Linear(1.0, 0.0, 5), period_mult=2.0, scale=0.9),
        "Restarts(m=1.1, limit)": ss.Restarts(ss.Cosine(1.0, 0.0, 3), period_mult=1.1, limit=6),
        "Restarts(m=1.0001)": ss.Restarts(ss.Linear(1.0, 0.0, 3), period_mult=1.0001),
        "Cyclic(triangular2)": ss.Cyclic(0.1, 1.0, 3, down=4, mode="triangular2"),
        "Cyclic(exp_range)": ss.Cyclic(0.1, 1.0, 3, mode="exp_range", gamma=0.999),
        "Cyclic(odd period)": ss.Cyclic(0.1, 1.0, 7, down=6),
        "OneCycle(three_phase)": ss.OneCycle(0.5, 1000, three_phase=True),
        "CosineDecayRestarts(t_mul=1)": ss.CosineDecayRestarts(0.1, 13, t_mul=1.0, m_mul=0.9),
        "CosineDecayRestarts(alpha)": ss.CosineDecayRestarts(0.1, 10, alpha=0.1),
        "PolynomialDecay(cycle)": ss.PolynomialDecay(0.1, 17, cycle=True, power=2.0),
        "PerUpdate(Restarts)": ss.Restarts(ss.Linear(1.0, 0.0, 5)).per_update(3),
        "Piecewise(int32 edge)": ss.Piecewise([2**31 - 2], [1.0, 0.5]),
        "Sequence(absolute)": ss.Sequence([ss.Constant(1.0, 100), ss.Exponential(1.0, 0.999)],
                                          relative=False),
        "ExponentialDecay(staircase)": ss.ExponentialDecay(0.1, 1000, 0.99, staircase=True),
        "WarmupStableDecay(1-sqrt)": ss.WarmupStableDecay(0.1, 10, 20, stable=30,
                                                          decay_shape="1-sqrt"),
        "Planned": ss.Planned(ss.Warmup(ss.epochs(1)) >> ss.Restarts(ss.Cosine(1.0, 0.0,
                                                                         ss.fraction(0.1))),
                              steps_per_epoch=7, total_steps=70),
        "Scaled": ssc.Scaled(ss.Restarts(ss.Cosine(1.0, 0.0, 9)), multiplier=0.5,
                             min_lr=0.01),
    })
    return out


CATALOGUE = _catalogue()
INT32_STEPS = [0, 1, 5, 4096, 2**24 - 1, 2**24, 2**24 + 1, 2**24 + 3, 123_456_789,
               2**30 + 7, 2**31 - 129, 2**31 - 2, 2**31 - 1]


@pytest.mark.backend_independent
def test_catalogue_covers_every_schedule_class():
    classes = {name for name, obj in _public()
               if inspect.isclass(obj) and issubclass(obj, Schedule)
               and name not in NOT_CONSTRUCTORS}
    covered, todo = set(), list(CATALOGUE.values())
    while todo:
        schedule = todo.pop()
        covered.add(type(schedule).__name__)
        todo.extend(schedule._children())
    assert classes <= covered, f"schedule classes missing from the catalogue: {classes - covered}"


F32_EPS = 2.0**-23


def assert_f32_close(schedule, steps, got, expected, exact_step=False):
    """``got`` (in-graph) equals ``expected`` (float64 NumPy, cast) to float32 precision.

    Allowed: 4 ulps of the value, plus 4 ulps of the schedule's scale (so a value that should
    be 0 may be off by float32 rounding of the numbers it was computed from). On JAX, whose
    in-graph arithmetic is float32, smooth formulas see the step rounded to float32 and
    round every operation: add 2e-6 relative, and -- unless ``exact_step`` (periodic
    schedules, whose phase is computed from the exact int32 step) -- the change of the value
    over +-1 ulp of the step (measured with the NumPy reference).
    """
    steps = np.asarray(steps, np.float64)
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    scale = max(float(np.max(np.abs(schedule.at(range(0, 4000, 7))))),
                float(np.max(np.abs(expected))))
    allowed = 4 * np.spacing(np.abs(expected).astype(np.float32)) + 4 * F32_EPS * scale
    if JAX_F32:
        allowed = allowed + 2e-6 * np.abs(expected)
    if JAX_F32 and not exact_step:
        ulp = np.spacing(steps.astype(np.float32)).astype(np.float64)
        near = np.maximum(np.abs(schedule.at(steps + ulp) - expected),
                          np.abs(schedule.at(np.maximum(steps - ulp, 0)) - expected))
        allowed = allowed + near
    assert np.all(np.isfinite(got)), got
    bad = np.abs(got - expected) > allowed
    assert not bad.any(), (f"steps {steps[bad].tolist()}: in-graph {got[bad].tolist()} vs "
                           f"NumPy {expected[bad].tolist()}")


def _periodic(schedule) -> bool:
    """Whether the schedule (or a piece of it) repeats: its phase must be exact."""
    todo = [schedule]
    while todo:
        s = todo.pop()
        if isinstance(s, (ss.Restarts, ss.Cyclic, ss.CosineDecayRestarts)) or (
                isinstance(s, ss.PolynomialDecay) and s.arg("cycle")):
            return True
        if isinstance(s, ss.Recipe):
            todo.append(s.explain())
        todo.extend(s._children())
    return False


def _longrun_params():
    for name in sorted(CATALOGUE):
        marks = []
        yield pytest.param(name, id=name, marks=marks)


_GRAPH_CACHE: dict = {}


def catalogue_in_graph(dtype: str) -> dict:
    """Every catalogue schedule evaluated in-graph at the long-run steps, in ONE compiled
    function per dtype (jit on TensorFlow and JAX, as conftest.graph_values does), so the
    whole catalogue costs one compilation."""
    if dtype not in _GRAPH_CACHE:
        names = sorted(CATALOGUE)
        steps = np.asarray(INT32_STEPS if dtype == "int32" else INT64_STEPS, dtype=dtype)

        def all_values(s):
            return keras.ops.stack([CATALOGUE[n](s) for n in names])

        if BACKEND == "tensorflow":
            import tensorflow as tf

            out = tf.function(all_values, jit_compile=True)(tf.constant(steps))
        elif BACKEND == "jax":
            import jax

            out = jax.jit(all_values)(steps)
        else:
            out = all_values(keras.ops.convert_to_tensor(steps))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        _GRAPH_CACHE[dtype] = dict(zip(names, keras.ops.convert_to_numpy(out), strict=True))
    return _GRAPH_CACHE[dtype]


@pytest.mark.parametrize("name", list(_longrun_params()))
def test_int32_steps_in_graph_match_numpy(name):
    schedule = CATALOGUE[name]
    expected = schedule.at(INT32_STEPS)
    assert np.all(np.isfinite(expected)), expected
    assert_f32_close(schedule, INT32_STEPS, catalogue_in_graph("int32")[name], expected,
                     exact_step=_periodic(schedule))


def test_decay_to_zero_never_goes_negative_in_graph():
    steps = [9, 10, 11, 2**31 - 1]
    for schedule in (ss.Linear(1.0, 0.0, 10), ss.Linear(0.3, 0.0, 7),
                     ss.WarmupStableDecay(1.0, 0, 10, stable=1), ss.OneCycle(1.0, 10,
                                                                           anneal_strategy="linear",
                                                                           final_div_factor=1e30)):
        assert np.all(graph_values(schedule, steps) >= 0.0), schedule


INT64_STEPS = [0, 2**31 - 1, 2**31, 2**32 + 5, 2**40 + 3, 10**15 + 1, 2**53 - 1]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="only TensorFlow counts steps in int64")
@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_int64_steps_in_graph_match_numpy(name):
    schedule = CATALOGUE[name]
    expected = schedule.at(INT64_STEPS)
    assert np.all(np.isfinite(expected)), expected
    assert_f32_close(schedule, INT64_STEPS, catalogue_in_graph("int64")[name], expected)


def test_cycle_arithmetic_keeps_the_phase_at_int32_max():
    """No integer overflow and no lost phase: a periodic schedule at 2**31 - 1 has the
    value it has at the same position in its first cycle (restarts, Keras's SGDR, restarts
    counted in updates, cyclic with unequal halves)."""
    top = 2**31 - 1
    cases = [(ss.Restarts(ss.Linear(1.0, 0.0, 10)), 10),
             (ss.CosineDecayRestarts(1.0, 10, t_mul=1.0), 10),
             (ss.Restarts(ss.Cosine(1.0, 0.0, 7)).per_update(2), 14),
             (ss.Cyclic(0.1, 1.0, 4, down=7), 11),
             (ss.PolynomialDecay(1.0, 9, cycle=True), None)]
    for schedule, period in cases:
        if period is None:  # PolynomialDecay(cycle): the horizon grows, nothing repeats
            steps = [top - k for k in range(30)]
            assert_f32_close(schedule, steps, graph_values(schedule, steps), schedule.at(steps),
                             exact_step=True)
            continue
        steps = [top - k for k in range(3 * period)]
        first = [s % period for s in steps]
        np.testing.assert_allclose(schedule.at(steps), schedule.at(first), rtol=1e-6)
        np.testing.assert_allclose(graph_values(schedule, steps), schedule.at(first),
                                   rtol=1e-6, atol=1e-7)


# What each finite recipe documents after its end: it holds its final value.
PAST_THE_END = {
    "OneCycle": (ss.OneCycle(0.1, 100), 100),
    "OneCycle(three_phase)": (ss.OneCycle(0.1, 100, three_phase=True), 100),
    "OneCycleMomentum": (ss.OneCycleMomentum(100), 100),
    "WarmupCosine": (ss.WarmupCosine(0.1, 10, 100, end=0.001), 100),
    "WarmupStableDecay": (ss.WarmupStableDecay(0.1, 10, 20, total=100, end=0.001), 100),
    "WarmupStableDecay(exponential)": (ss.WarmupStableDecay(0.1, 10, 20, total=100, end=0.001,
                                                            decay_shape="exponential"), 100),
    "CosineDecay": (ss.CosineDecay(0.1, 100, alpha=0.1), 100),
    "CosineDecay(warmup)": (ss.CosineDecay(0.0, 90, warmup_target=0.1, warmup_steps=10), 100),
    "PolynomialDecay": (ss.PolynomialDecay(0.1, 100, end_learning_rate=0.01), 100),
}


@pytest.mark.parametrize("name", sorted(PAST_THE_END))
def test_finite_recipes_hold_their_final_value_past_the_end(name):
    schedule, total = PAST_THE_END[name]
    assert schedule.duration is None or schedule.duration == pytest.approx(total)
    final = schedule.at(total - 1 if name.startswith("OneCycle") else total)
    later = [total, total + 1, 10 * total, 2**31 - 1]
    np.testing.assert_array_equal(schedule.at(later), np.full(4, final, np.float32))
    assert_f32_close(schedule, later, graph_values(schedule, later), np.full(4, final))


# ------------------------------------------------------------------ killed mid-training
class _Kill(keras.callbacks.Callback):
    """Simulates the process dying during batch ``at_step`` (global count) of a fit."""

    def __init__(self, at_step: int):
        super().__init__()
        self.at_step = at_step
        self.seen = 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen == self.at_step:
            raise RuntimeError("killed")
        self.seen += 1


# A schedule with every kind of state-free trickiness: a warmup into restarts with growing
# periods and decay, so a resume at the wrong step shows up as a wrong value.
RESUME_SCHEDULE = ss.Warmup(5, start=0.05) >> ss.Restarts(ss.Cosine(1.0, 0.1, 6),
                                                          period_mult=1.5, scale=0.8)


def _onehot_model(rate, n):
    inputs = keras.Input((n,))
    outputs = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=rate), loss=mean_output)
    return model


def _applied(model):
    return -keras.ops.convert_to_numpy(model.layers[-1].kernel)[:, 0].astype(np.float64)


def test_killed_mid_epoch_resume_continues_the_exact_rates(tmp_path):
    """BackupAndRestore saving every 4 batches; the process dies mid-epoch, after a
    checkpoint; a fresh model resumes. One-hot probe: -w[k] is the rate applied at step k,
    so every single applied rate is checked."""
    n = 30
    x = np.eye(n, dtype="float32")
    y = x[:, :1]
    fit = dict(batch_size=1, shuffle=False, verbose=0)
    whole = _onehot_model(RESUME_SCHEDULE, n)
    whole.fit(x, y, epochs=1, **fit)
    expected = RESUME_SCHEDULE.at(range(n)).astype(np.float64)
    np.testing.assert_allclose(_applied(whole), expected, rtol=1e-6)

    backup_dir = str(tmp_path / "backup")
    model = _onehot_model(RESUME_SCHEDULE, n)
    with pytest.raises(RuntimeError, match="killed"):
        model.fit(x, y, epochs=1, callbacks=[keras.callbacks.BackupAndRestore(
            backup_dir, save_freq=4), _Kill(at_step=14)], **fit)
    resumed = _onehot_model(RESUME_SCHEDULE, n)  # a new process rebuilds the model
    resumed.fit(x, y, epochs=1, callbacks=[keras.callbacks.BackupAndRestore(
        backup_dir, save_freq=4)], **fit)
    # The backup after step 11 is restored (iterations = 12) and Keras restarts the epoch
    # from its first row, so rows 0..29 receive steps 12..41: the rates must be exactly
    # those of steps 12..41 (the step counter, not the batch index, drives them).
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == 12 + n
    got = _applied(resumed)
    before = _applied(model)  # what the killed run had applied (steps 0..13)
    assert np.all(before[14:] == 0)
    restored = np.where(np.arange(n) < 12, expected, 0.0)  # checkpoint content
    resumed_rates = got - restored
    np.testing.assert_allclose(resumed_rates, RESUME_SCHEDULE.at(range(12, 12 + n)), rtol=1e-6,
                               atol=1e-9)


@pytest.mark.skipif(not hasattr(ssc, "ReduceLROnPlateau"),
                    reason="stepsched.callbacks.ReduceLROnPlateau is not public yet")
def test_killed_run_resumes_plateau_state_exactly(tmp_path):
    """Plateau reductions (per 4 batches) and their bookkeeping survive a kill + resume:
    the resumed rates equal those of an uninterrupted run, reduction for reduction."""
    base = ss.Warmup(4, start=0.2) >> ss.Exponential(1.0, 0.97)
    x, y = probe_data(16)
    fit = dict(batch_size=2, epochs=4, shuffle=False, verbose=0)
    config = dict(every=4, mode="max", patience=1, factor=0.5, cooldown=1)

    def run(callbacks):
        model = probe_model(base)
        ws = []

        class Rec(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                ws.append(weight(self.model))

        try:
            model.fit(x, y, callbacks=[*callbacks, Rec()], **fit)
        except RuntimeError:
            pass
        return model, ws

    whole, ws_whole = run([ssc.ReduceLROnPlateau(**config)])
    rates_whole = -np.diff([0.0] + ws_whole)
    assert min(rates_whole / base.at(range(64))) < 0.3, "the run must include reductions"

    backup_dir = str(tmp_path / "backup")
    killed, ws_killed = run([keras.callbacks.BackupAndRestore(backup_dir),
                             ssc.ReduceLROnPlateau(**config), _Kill(at_step=16 * 2 + 5)])
    assert len(ws_killed) == 37
    resumed, ws_resumed = run([keras.callbacks.BackupAndRestore(backup_dir),
                               ssc.ReduceLROnPlateau(**config)])
    # resumed at the start of epoch 2 (the last epoch-end backup): steps 32..63
    assert len(ws_resumed) == 32
    rates = -np.diff([ws_whole[31]] + ws_resumed)
    np.testing.assert_allclose(rates, rates_whole[32:], rtol=1e-6)
    assert weight(resumed) == pytest.approx(weight(whole), rel=1e-6)
    assert math.isclose(resumed.optimizer._learning_rate.multiplier_value,
                        whole.optimizer._learning_rate.multiplier_value)


# ------------------------------------------------------------------ structure far out
FAR = 2**24 + 2**22 + 0.25  # past float32's exact integers, and not a whole number
FAR_LOCAL = [0, 1, 2, 3, 7, 50, 999, 4096, 123_457]


def _far_catalogue() -> dict[str, Schedule]:
    """Every catalogue schedule started at step FAR (so its joins, knots, boundaries and cycle
    starts lie past 2**24), plus knots placed there directly."""
    out = {name: ss.Constant(0.25, FAR) >> s for name, s in CATALOGUE.items()}
    out.update({
        "Interpolate(far knots)": ss.Interpolate([2**24, 2**24 + 10], [0.0, 1.0]),
        "Interpolate(far cosine)": ss.Interpolate([2**25 + 0.5, 2**25 + 40.5, 2**25 + 90],
                                                  [0.1, 1.0, 0.3], kind="cosine"),
        "Piecewise(far)": ss.Piecewise([2**24 + 1, 2**24 + 2, 2**26 + 3], [1.0, 0.5, 0.25, 0.1]),
        "Warmup(far)": ss.Constant(0.0, 3 * 2**23 + 0.5) >> ss.Warmup(10) >> ss.Cosine(1, 0, 9),
    })
    return out


FAR_CATALOGUE = _far_catalogue()


def _far_steps(name):
    if "(far" in name:
        schedule = FAR_CATALOGUE[name]
        if isinstance(schedule, (ss.Interpolate, ss.Piecewise)):
            knots = [float(b) for b in schedule.arg("boundaries")]
        else:
            knots = [3 * 2**23 + 0.5]
        return sorted({int(k) + d for k in knots for d in (-1, 0, 1, 2, 3, 5, 10, 20)})
    return [int(FAR) + d for d in FAR_LOCAL]


@pytest.mark.parametrize("name", sorted(FAR_CATALOGUE))
def test_joins_knots_and_cycle_starts_past_2_24_match_numpy(name):
    schedule = FAR_CATALOGUE[name]
    steps = _far_steps(name)
    expected = schedule.at(steps)
    got = graph_values(schedule, steps)
    # every local step is exact on every backend: no allowance for a rounded step
    assert_f32_close(schedule, steps, got, expected, exact_step=True)
    got = graph_values(schedule, steps, scalar=True)
    assert_f32_close(schedule, steps, got, expected, exact_step=True)


def test_interpolate_far_knots_reported_case():
    s = ss.Interpolate([2**24, 2**24 + 10], [0.0, 1.0])
    np.testing.assert_allclose(graph_values(s, [2**24 + 1, 2**24 + 3, 2**24 + 5]),
                               [0.1, 0.3, 0.5], rtol=1e-6)
