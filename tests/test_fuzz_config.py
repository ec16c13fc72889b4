"""Fuzzing the config loader: whatever JSON arrives, the outcome is a schedule or a clear error.

``keras.saving.deserialize_keras_object`` (what ``load_model`` runs on the optimizer's
learning-rate config) is fed random JSON-like structures and mutations of real stepsched
configs (keys dropped, values replaced by random JSON, class names swapped for other
registered or made-up names, values wrapped in lists or dicts). The outcome must be one of:

- a ``stepsched.Schedule`` whose values at steps 0..9 are finite (after resolving
  ``epochs``/``fraction`` durations, when there are any), or
- ``ValueError`` / ``TypeError`` (Keras's own deserialization errors are ``TypeError``/
  ``ValueError`` too), at loading or, for the few schedules that are only valid inside a
  composition (a lone ``Warmup``), at evaluation;
- plain JSON comes back as plain data, registered names possibly turned into the stepsched
  class itself (Keras's passthrough and class references: nothing is constructed or called).

Never anything else: no ``KeyError``/``AttributeError``/``IndexError``/``RecursionError``/
``OverflowError`` leaking out, no NaN or inf, no hang (each example has a deadline).

Keras's envelope fields ``module`` and ``registered_name`` are kept strings (or absent):
Keras itself calls ``module.startswith`` on an unregistered class name, so a non-string
``module`` raises ``AttributeError`` inside ``keras.saving`` before any stepsched code runs
(a Keras behaviour; nested inside a stepsched config it becomes a ``TypeError``:
``test_nested_piece_with_a_non_string_module_is_a_clear_error``).

Generated numbers stay within float32 (|x| <= 1e30, plus NaN/inf and the sub-normal-free
tiny values): values beyond float32 and integers like ``10**400`` are known defects,
pinned as strict xfails in tests/test_hardening.py and in ``test_known_defect_*`` below.
"""

from __future__ import annotations

import copy
import json
import math
import os

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stepsched as ss
import stepsched.callbacks as ssc
from stepsched.schedules.base import Schedule

ALLOWED = (ValueError, TypeError)

# A fixed, fast run by default (well under 20 s per backend); set STEPSCHED_FUZZ_EXAMPLES to
# hunt longer with fresh random examples.
_HUNT = int(os.environ.get("STEPSCHED_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_HUNT or 300, deadline=2000, derandomize=not _HUNT,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    database=None)

# the schedule classes (stepsched.optimizers registers optimizers too: their configs are
# Keras optimizer configs, loaded by Keras's own code)
EVERY_CLASS = sorted(k for k, v in keras.saving.get_custom_objects().items()
                     if k.startswith("stepsched>") and isinstance(v, type)
                     and issubclass(v, (ss.Schedule, ss.Duration)))
# a schedule with run state (plateau reduction, a cooldown) makes a Keras variable when it
# is built: loading its config runs backend code, so it is fuzzed on every backend (the
# ``stateful`` tests below) and the host-code fuzz never names it
STATEFUL = sorted(k for k in EVERY_CLASS
                  if getattr(keras.saving.get_registered_object(k), "reads_variables", False))
REGISTERED = [k for k in EVERY_CLASS if k not in STATEFUL]

# Real configs: every kind of argument (durations, lists, nested schedules, recipes).
SEEDS = [keras.saving.serialize_keras_object(s) for s in [
    ss.Constant(0.1, 5),
    ss.Linear(1.0, 0.0, 10),
    ss.Cosine(1.0, 0.1, ss.epochs(2), exponent=2.0),
    ss.Exponential(1.0, 0.9, every=3, staircase=True, limit=0.01),
    ss.Piecewise([3, 6], [1.0, 0.5, 0.1]),
    ss.Interpolate([0, 5, 9], [0.0, 1.0, 0.5], kind="cosine"),
    ss.Warmup(4, start=0.01, shape="exponential") >> ss.Polynomial(1.0, 0.0, 10, power=2.0),
    ss.Restarts(ss.Cosine(1.0, 0.0, 4), period_mult=2.0, scale=0.5, limit=3),
    ss.Linear(1.0, 0.5, 5).clip(0.6, 0.9) * 2.0 + 0.1,
    ss.Linear(1.0, 0.0, 6).per_update(2),
    ss.Sequence([ss.Constant(1.0, 3), ss.Exponential(1.0, 0.5)], relative=False),
    ss.ExponentialDecay(0.1, 10, 0.9),
    ss.PiecewiseConstantDecay([3, 6], [1.0, 0.5, 0.1]),
    ss.PolynomialDecay(0.1, 10, cycle=True),
    ss.InverseTimeDecay(0.1, 10, 0.5, staircase=True),
    ss.CosineDecay(0.0, 10, warmup_target=0.1, warmup_steps=5),
    ss.CosineDecayRestarts(0.1, 5, alpha=0.1),
    ss.OneCycle(0.1, ss.fraction(1.0), three_phase=True),
    ss.Cyclic(0.01, 0.1, 3, down=5, mode="exp_range", gamma=0.99),
    ss.WarmupCosine(0.1, ss.fraction(0.1), ss.fraction(1.0), end=0.001),
    ss.WarmupStableDecay(0.1, 2, 3, total=10, decay_shape="1-sqrt"),
    ss.InverseSqrt(0.1, 5),
    ss.Noam(512, 4),
    ss.KDecay(1.0, 0.0, 10, k=2.0), ss.TanhDecay(1.0, 0.0, 10), ss.Rex(1.0, 0.0, 10),
]]
STATEFUL_SEEDS = [keras.saving.serialize_keras_object(s) for s in [
    ssc.Scaled(ss.Linear(1.0, 0.0, 10), multiplier=0.5, min_lr=0.01, state={"best": 1.0}),
    ss.Cooldown(ss.Warmup(2) >> ss.Constant(1.0), 4, start_step=3),
    ss.Cooldown(ssc.Scaled(ss.Cosine(1.0, 0.1, ss.epochs(2)), multiplier=0.25), 5,
                shape="linear", end=0.1),
]]

# ------------------------------------------------------------------ strategies
numbers = st.one_of(
    st.integers(-(2**63), 2**63),
    st.floats(min_value=-1e30, max_value=1e30, allow_subnormal=False),
    st.floats(min_value=1e-30, max_value=1e30),
    st.sampled_from([math.nan, math.inf, -math.inf, 0, 1, -1, 0.5, 2**31 - 1]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers,
                    st.text(max_size=8), st.sampled_from(REGISTERED + ["steps", "epochs",
                                                                       "fraction", "linear"]))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["class_name", "config", "value",
                                                             "unit", "pieces", "start"])
                                            | st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


def _paths(value, prefix=()):
    """Every path into a JSON structure (tuples of keys/indices), the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _get(value, path):
    for key in path:
        value = value[key]
    return value


def _set(root, path, new):
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


#: Keras's own envelope fields: Keras assumes they are strings (see KERAS_ENVELOPE below)
ENVELOPE = ("module", "registered_name")


@st.composite
def mutated_configs(draw, seeds=SEEDS, names=REGISTERED):
    config = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(config)
        path = draw(st.sampled_from(paths))
        if path and path[-1] in ENVELOPE:
            config = _set(config, path, draw(st.none() | st.text(max_size=12)))
            continue
        op = draw(st.sampled_from(["drop", "replace", "class_name", "wrap", "swap_type",
                                   "duplicate"]))
        target = _get(config, path)
        if op == "drop" and path:
            parent = _get(config, path[:-1])
            if isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent.pop(path[-1])
        elif op == "class_name" and isinstance(target, dict):
            target["class_name"] = draw(st.sampled_from(names) | st.text(max_size=10))
            target.pop("registered_name", None)
            target.pop("module", None)
        elif op == "wrap":
            config = _set(config, path, draw(st.sampled_from([[target], {"config": target},
                                                              {"class_name": "stepsched>Affine",
                                                               "config": {"schedule": target}}])))
        elif op == "swap_type":
            swapped = {int: str, float: str, str: float, bool: int, type(None): list,
                       list: dict, dict: list}.get(type(target), str)
            try:
                new = swapped(target) if swapped is not list else [target]
            except (TypeError, ValueError):
                new = str(target)
            config = _set(config, path, new)
        elif op == "duplicate" and isinstance(target, list):
            target.extend(target[: draw(st.integers(1, 3))])
        else:
            config = _set(config, path, draw(json_values))
    return config


# ------------------------------------------------------------------ the property
def _check_schedule(schedule: Schedule) -> None:
    """Finite values at steps 0..9, or a clear error (resolving or evaluating)."""
    try:
        if schedule.is_symbolic:
            schedule = schedule.resolve(steps_per_epoch=7, total_steps=50)
        values = schedule.at(range(10))
    except ALLOWED:
        return
    assert np.all(np.isfinite(values)), (schedule, values)


def _check_plain(value) -> None:
    """Plain data from Keras's passthrough: JSON scalars, registered stepsched classes (class
    references: nothing constructed or called) and schedules built from nested configs."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
        elif isinstance(item, type):
            assert issubclass(item, (Schedule, ss.Duration)), item
        elif isinstance(item, Schedule):
            _check_schedule(item)
        else:
            assert item is None or isinstance(item, (bool, int, float, str, ss.Duration)), item


def check_outcome(config) -> None:
    """Load ``config`` as ``load_model`` would; assert the outcome is one of the allowed ones."""
    config = json.loads(json.dumps(config, allow_nan=True))  # what a file can hold
    try:
        result = keras.saving.deserialize_keras_object(config)
    except ALLOWED:
        return
    if isinstance(result, Schedule):
        _check_schedule(result)
    else:
        _check_plain(result)


@SETTINGS
@given(mutated_configs())
@pytest.mark.backend_independent
def test_mutated_stepsched_configs(config):
    check_outcome(config)


@SETTINGS
@given(json_values)
@pytest.mark.backend_independent
def test_random_json(config):
    check_outcome(config)


@SETTINGS
@given(st.sampled_from(REGISTERED), st.dictionaries(
    st.sampled_from(["start", "end", "duration", "value", "rate", "every", "boundaries",
                     "values", "pieces", "piece", "schedule", "peak", "warmup", "total",
                     "decay", "scale", "limit", "stable", "low", "high", "up", "down", "max_lr", "total_steps",
                     "initial_learning_rate", "decay_steps", "decay_rate", "d_model", "k",
                     "timescale", "multiplier", "state", "unit", "kind", "shape", "mode"]),
    json_values, max_size=6))
@pytest.mark.backend_independent
def test_registered_class_with_random_arguments(class_name, arguments):
    check_outcome({"class_name": class_name, "config": arguments})


# schedules with run state, on every backend
@SETTINGS
@given(mutated_configs(seeds=STATEFUL_SEEDS, names=EVERY_CLASS))
def test_mutated_configs_of_schedules_with_run_state(config):
    check_outcome(config)


def test_the_host_code_fuzz_names_no_schedule_with_run_state():
    assert {"stepsched>Scaled", "stepsched>Cooldown"} <= set(STATEFUL)
    assert not set(STATEFUL) & set(REGISTERED)
    seeds = json.dumps(SEEDS)
    assert not any(f'"{name.split(">")[1]}"' in seeds for name in STATEFUL)


def test_seeds_load_and_round_trip():
    """The un-mutated seeds are valid: each loads and reproduces its values exactly."""
    for config in SEEDS + STATEFUL_SEEDS:
        back = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
        assert isinstance(back, Schedule)
        again = keras.saving.serialize_keras_object(back)
        assert json.dumps(again, sort_keys=True) == json.dumps(config, sort_keys=True)


# ------------------------------------------------------------------ known defects


@pytest.mark.backend_independent
def test_nested_piece_with_a_non_string_module_is_a_clear_error():
    config = {"piece": {"class_name": "Linear", "module": True,
                        "config": {"start": 1.0, "end": 0.0, "duration": 10}}}
    with pytest.raises(ALLOWED):
        ss.Restarts.from_config(config)
