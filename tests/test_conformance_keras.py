"""Conformance with Keras's own ``keras.optimizers.schedules`` classes.

Each Keras schedule is evaluated at every step of the run and past it and
compared with its stepsched counterpart (same class name, same arguments) and,
where the row of docs/migration.md says so, with a one-liner of primitives.

The reference is Keras's code in float64, so that no comparison depends on
which side of a boundary float32 rounding on this CPU puts a step (issue 11
#6: on an AMD EPYC, Keras's float32 put step 40 of a ``CosineDecayRestarts``
in the previous cycle). It is Keras's ``__call__`` transcribed into NumPy
float64 (``keras_reference``), checked against Keras's own run with float64
arguments (``test_reference_is_keras``; on torch Keras leaks a few float32
intermediates, so its own float64 run cannot serve). ``CosineDecayRestarts``
finds the cycle with a log, which even in float64 can put a cycle start in the
previous cycle: it is compared with the exact arithmetic of the same formula
(``decimal``, 60 digits), where the new cycle has begun at its start step.

Tolerance: stepsched's ``.at()`` is float32: rtol=1e-6, plus an absolute 1e-6
x the peak for values near 0. In-graph on JAX (float32): rtol=2e-6.

A property test draws arguments from Keras's whole accepted domain (what its
constructor takes; its formula decides the rest): stepsched must accept and
match wherever Keras's values are finite, and may refuse only where Keras
raises or its value is non-finite at some step, naming Keras's argument.
"""

from __future__ import annotations

import contextlib
import decimal
import math
from fractions import Fraction

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stepsched as ss
from tests.conftest import BACKEND, graph_values

KS = keras.optimizers.schedules
N = 300
F32_MAX = float(np.finfo(np.float32).max)
JAX_F32 = BACKEND == "jax" and not __import__("jax").config.jax_enable_x64
STEP_DTYPE = "int64" if BACKEND == "tensorflow" else "int32"  # the optimizer's counter
#: Keras's classes that take one scalar step at a time (``ops.cond`` on the step, ``+=``)
SCALAR_ONLY = {"CosineDecay", "PiecewiseConstantDecay"}


# ----------------------------------------------------------------------------- references
@contextlib.contextmanager
def _float64():
    if BACKEND == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def _f64(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_f64(v) for v in value]
    return keras.ops.convert_to_tensor(np.asarray(value, np.float64))


def _evaluate(schedule, steps, scalar: bool, dtype="float64"):
    steps = keras.ops.convert_to_tensor(steps)
    if not scalar:
        return keras.ops.convert_to_numpy(schedule(steps))
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.jit(jax.vmap(schedule))(steps))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.map_fn(schedule, steps, fn_output_signature=tf.as_dtype(dtype)).numpy()
    return np.asarray([keras.ops.convert_to_numpy(schedule(s)) for s in steps])


def keras_float64(cls: str, kwargs: dict, steps) -> np.ndarray:
    """Keras's own ``cls(**kwargs)`` run at ``steps`` with float64 arguments.

    Faithful float64 on TensorFlow and JAX; on torch ``keras.ops.floor``, ``minimum``
    and ``maximum`` return float32, so a few intermediates are float32 there.

    ``PiecewiseConstantDecay`` casts its boundaries to the step's type, so it gets
    the optimizer's integer steps; the others cast the step to their float type.
    """
    with _float64():
        if cls == "PiecewiseConstantDecay":  # float boundaries as float64 too, not float32
            args = dict(kwargs, values=_f64(kwargs["values"]),
                        boundaries=[_f64(b) if isinstance(b, float) else b
                                    for b in kwargs["boundaries"]])
            step_array = np.asarray(steps, STEP_DTYPE)
        else:
            args = {k: _f64(v) for k, v in kwargs.items()}
            step_array = np.asarray(steps, np.float64)
        out = _evaluate(getattr(KS, cls)(**args), step_array, cls in SCALAR_ONLY)
    return np.asarray(out, np.float64).reshape(np.shape(steps))


def keras_reference(cls: str, kw: dict, steps) -> np.ndarray:
    """Keras's ``__call__`` (keras/src/optimizers/schedules/learning_rate_schedule.py)
    transcribed line for line into NumPy float64: the reference of every comparison.
    ``test_reference_is_keras`` checks it against Keras's own float64 run."""
    s = np.asarray(steps, np.float64)
    init = kw.get("initial_learning_rate")
    with np.errstate(all="ignore"):
        if cls in ("ExponentialDecay", "InverseTimeDecay"):
            p = s / kw["decay_steps"]
            if kw.get("staircase", False):
                p = np.floor(p)
            if cls == "ExponentialDecay":
                return init * np.power(kw["decay_rate"], p)
            return init / (1.0 + kw["decay_rate"] * p)
        if cls == "PolynomialDecay":
            d, end = kw["decay_steps"], kw.get("end_learning_rate", 0.0001)
            if kw.get("cycle", False):
                g, dd = s, d * np.where(s == 0, 1.0, np.ceil(s / d))
            else:
                g, dd = np.minimum(s, d), d
            return (init - end) * np.power(1 - g / dd, kw.get("power", 1.0)) + end
        if cls == "CosineDecay":
            d, alpha = kw["decay_steps"], kw.get("alpha", 0.0)
            target, w = kw.get("warmup_target"), kw.get("warmup_steps", 0)

            def decay(g, lr):
                return lr * ((1 - alpha) * (0.5 * (1.0 + np.cos(np.pi * (g / d)))) + alpha)

            if target is None:
                return decay(np.minimum(s, d), init)
            g = np.minimum(s, d + w)
            return np.where(g < w, (target - init) * (g / w) + init, decay(g - w, target))
        if cls == "CosineDecayRestarts":
            first, t = kw["first_decay_steps"], kw.get("t_mul", 2.0)
            m, alpha = kw.get("m_mul", 1.0), kw.get("alpha", 0.0)
            cf = s / first
            if t == 1.0:
                i = np.floor(cf)
                cf = cf - i
            else:
                i = np.floor(np.log(1.0 - cf * (1.0 - t)) / np.log(t))
                cf = (cf - (1.0 - np.power(t, i)) / (1.0 - t)) / np.power(t, i)
            decayed = 0.5 * np.power(m, i) * (1.0 + np.cos(np.pi * cf))
            return init * ((1 - alpha) * decayed + alpha)
        if cls == "PiecewiseConstantDecay":
            step = np.asarray(steps, np.int64)  # the optimizer's integer step
            b = [math.trunc(x) for x in kw["boundaries"]]  # cast to the step's type
            v = kw["values"]
            out = (step <= b[0]) * v[0] + (step > b[-1]) * v[-1]
            for lo, hi, value in zip(b[:-1], b[1:], v[1:-1], strict=True):
                out = out + ((step > lo) & (step <= hi)) * value
            return np.asarray(out, np.float64)
    raise KeyError(cls)


def keras_float32(cls: str, kwargs: dict, steps) -> np.ndarray:
    """Keras as users run it: Python-number arguments, float32."""
    dtype = STEP_DTYPE if cls == "PiecewiseConstantDecay" else "float32"
    out = _evaluate(getattr(KS, cls)(**kwargs), np.asarray(steps, dtype), cls in SCALAR_ONLY,
                    "float32")
    return np.asarray(out, np.float64).reshape(np.shape(steps))


_D = decimal.Context(prec=60)


def restart_cycles(kwargs: dict, steps):
    """Exact cycle of each step of Keras's ``CosineDecayRestarts(**kwargs)``.

    Returns ``(near, exact)``: whether the step lies within 1e-9 (relative) of a
    cycle start, and the exact value there (the cycle containing the step; at a
    start, the new one).
    """
    first = kwargs.get("first_decay_steps")
    t, m = kwargs.get("t_mul", 2.0), kwargs.get("m_mul", 1.0)
    init, alpha = kwargs["initial_learning_rate"], kwargs.get("alpha", 0.0)
    dd, dt = decimal.Decimal(first), decimal.Decimal(t)

    def start(k: int) -> decimal.Decimal:
        if t == 1.0:
            return _D.multiply(dd, k)
        return _D.divide(_D.multiply(dd, _D.subtract(_D.power(dt, k), 1)), dt - 1)

    near, exact = [], []
    for s in np.asarray(steps, np.float64).tolist():
        if t == 1.0:
            k = int(s // first)
        else:
            k = int(math.log1p(s * (t - 1.0) / first) / math.log1p(t - 1.0))
        k = max(k - 2, 0)
        ds = decimal.Decimal(s)
        while start(k + 1) <= ds:
            k += 1
        while k > 0 and start(k) > ds:
            k -= 1
        gap = min(ds - start(k), start(k + 1) - ds)
        near.append(float(gap) <= 1e-9 * max(s, 1.0))
        u = float(_D.divide(ds - start(k), _D.multiply(dd, _D.power(dt, k))))
        with np.errstate(all="ignore"):
            factor = np.power(np.float64(m), k)
            exact.append(init * ((1 - alpha) * factor * 0.5 * (1 + math.cos(math.pi * u))
                                 + alpha))
    return np.asarray(near), np.asarray(exact, np.float64)


def assert_conforms(ours, theirs, rtol=1e-6, peak=None):
    """``ours`` (float32) equals the float64 reference rounded to float32, to ``rtol``."""
    with np.errstate(over="ignore"):
        ours = np.asarray(ours, np.float64).astype(np.float32).astype(np.float64)
        theirs = np.asarray(theirs, np.float64).astype(np.float32).astype(np.float64)
    peak = np.abs(theirs).max() if peak is None else peak
    allowed = 1e-6 * peak + np.asarray(rtol) * np.abs(theirs)
    bad = ~(np.abs(ours - theirs) <= allowed) & ~((ours == theirs) & np.isinf(theirs))
    assert not bad.any(), (f"{int(bad.sum())} of {bad.size} values differ: ours "
                           f"{ours[bad][:8].tolist()} vs reference {theirs[bad][:8].tolist()} "
                           f"(indices {np.flatnonzero(bad)[:8].tolist()})")


F32_EPS = 2.0**-23


def f32_rtol(cls: str, kwargs: dict, reference, base: float):
    """Relative tolerance of a float32 evaluation, per step: ``base``, widened where float32
    rounding is amplified: an exponential's exponent (``p * log(rate)``, large far out) and
    the denominator of ``InverseTimeDecay`` near the step where it crosses 0."""
    if cls not in ("ExponentialDecay", "InverseTimeDecay"):
        return base
    with np.errstate(all="ignore"):
        ratio = np.abs(np.asarray(reference, np.float64) / kwargs["initial_learning_rate"])
        if cls == "ExponentialDecay":
            return base + 8 * F32_EPS * np.nan_to_num(np.abs(np.log(ratio)))
        return base * np.maximum(1.0, np.nan_to_num(ratio))


def check_counterpart(cls: str, kwargs: dict, ours_values, steps, rtol=1e-6) -> int:
    """``ours_values`` match Keras at ``steps``; returns the number of steps within rounding of
    a cycle start (checked against the exact arithmetic: the new cycle has begun)."""
    theirs = keras_reference(cls, kwargs, steps)
    ours_values = np.asarray(ours_values, np.float64)
    if cls != "CosineDecayRestarts":
        assert_conforms(ours_values, theirs, rtol)
        return 0
    # Keras's float64 run is the exact formula up to its own rounding (a log, a difference of
    # large sums; on torch keras.ops.floor returns float32): check that, then compare with
    # the exact arithmetic of the same formula.
    near, exact = restart_cycles(kwargs, steps)
    early = ~near & (np.asarray(steps, np.float64) < 10_000)
    assert_conforms(theirs[early], exact[early], rtol=1e-5)
    assert_conforms(ours_values, exact, rtol, peak=np.abs(theirs).max())
    return int(near.sum())


# ----------------------------------------------------------------------------- fixed cases
# name -> (class name, kwargs); both libraries take the same arguments
SAME_ARGS = {
    "ExponentialDecay": ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=37,
                                                  decay_rate=0.9)),
    "ExponentialDecay-staircase": ("ExponentialDecay", dict(initial_learning_rate=0.1,
                                                            decay_steps=37, decay_rate=0.5,
                                                            staircase=True)),
    "ExponentialDecay-growth": ("ExponentialDecay", dict(initial_learning_rate=0.1,
                                                         decay_steps=100, decay_rate=1.05)),
    "ExponentialDecay-negative-staircase": ("ExponentialDecay", dict(
        initial_learning_rate=0.1, decay_steps=20, decay_rate=-0.8, staircase=True)),
    "PiecewiseConstantDecay": ("PiecewiseConstantDecay",
                               dict(boundaries=[10, 100, 101, 250], values=[1.0, 0.5, 0.3, 0.2,
                                                                            0.01])),
    "PiecewiseConstantDecay-negative": ("PiecewiseConstantDecay",
                                        dict(boundaries=[-1, 5], values=[1.0, 0.5, 0.1])),
    "PiecewiseConstantDecay-fractional": ("PiecewiseConstantDecay",
                                          dict(boundaries=[-0.5, 9.5, 40.25],
                                               values=[1.0, 0.5, 0.25, 0.125])),
    "PiecewiseConstantDecay-unsorted": ("PiecewiseConstantDecay",
                                        dict(boundaries=[50, 20, 80, 80],
                                             values=[1.0, 0.5, 0.25, 0.125, 0.0625])),
    "PolynomialDecay": ("PolynomialDecay", dict(initial_learning_rate=0.5, decay_steps=150,
                                                end_learning_rate=0.01, power=2.0)),
    "PolynomialDecay-cycle": ("PolynomialDecay", dict(initial_learning_rate=0.5, decay_steps=70,
                                                      end_learning_rate=0.05, power=0.5,
                                                      cycle=True)),
    "PolynomialDecay-power=0": ("PolynomialDecay", dict(initial_learning_rate=0.5, decay_steps=70,
                                                        power=0.0)),
    "InverseTimeDecay": ("InverseTimeDecay", dict(initial_learning_rate=0.2, decay_steps=20,
                                                  decay_rate=0.5)),
    "InverseTimeDecay-staircase": ("InverseTimeDecay", dict(initial_learning_rate=0.2,
                                                            decay_steps=20, decay_rate=0.5,
                                                            staircase=True)),
    "InverseTimeDecay-negative": ("InverseTimeDecay", dict(initial_learning_rate=0.2,
                                                           decay_steps=20, decay_rate=-0.3)),
    "CosineDecay": ("CosineDecay", dict(initial_learning_rate=0.3, decay_steps=333, alpha=0.1)),
    "CosineDecay-warmup": ("CosineDecay", dict(initial_learning_rate=0.01, decay_steps=300,
                                               alpha=0.05, warmup_target=0.4, warmup_steps=45)),
    "CosineDecay-negative-warmup": ("CosineDecay", dict(initial_learning_rate=0.01,
                                                        decay_steps=200, alpha=0.05,
                                                        warmup_target=0.4, warmup_steps=-30)),
    "CosineDecayRestarts": ("CosineDecayRestarts", dict(initial_learning_rate=0.3,
                                                        first_decay_steps=50)),
    "CosineDecayRestarts-t_mul=2-m_mul-alpha": (
        "CosineDecayRestarts", dict(initial_learning_rate=0.3, first_decay_steps=20, t_mul=2.0,
                                    m_mul=0.7, alpha=0.1)),
    "CosineDecayRestarts-t_mul=1.5": (
        "CosineDecayRestarts", dict(initial_learning_rate=1.0, first_decay_steps=16, t_mul=1.5,
                                    m_mul=0.9)),
    # Keras's float32 puts steps 16 and 36 (cycle starts) in the previous cycle on JAX here
    "CosineDecayRestarts-t_mul=1.25": (
        "CosineDecayRestarts", dict(initial_learning_rate=1.0, first_decay_steps=16, t_mul=1.25)),
    "CosineDecayRestarts-m_mul=1.5": (
        "CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=10, m_mul=1.5)),
    "CosineDecayRestarts-t_mul=1-m_mul<0": (
        "CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=7, t_mul=1.0,
                                    m_mul=-0.9, alpha=0.2)),
}


@pytest.mark.parametrize("name", list(SAME_ARGS))
def test_keras_counterpart(name):
    cls, kwargs = SAME_ARGS[name]
    ours = getattr(ss, cls)(**kwargs)
    check_counterpart(cls, kwargs, ours.at(range(N)), np.arange(N))
    reference = keras_reference(cls, kwargs, np.arange(N))
    check_counterpart(cls, kwargs, graph_values(ours, np.arange(N)), np.arange(N),
                      rtol=f32_rtol(cls, kwargs, reference, 2e-6) if JAX_F32 else 1e-6)


@pytest.mark.parametrize("name", list(SAME_ARGS))
def test_reference_is_keras(name):
    """The NumPy transcription is Keras: equal to Keras's own float64 run (to float64 noise
    on TensorFlow and JAX, to the float32 it leaks on torch) and to the float32 run users
    get (to float32 precision), away from the cycle starts where roundings disagree."""
    cls, kwargs = SAME_ARGS[name]
    steps = np.arange(N)
    reference = keras_reference(cls, kwargs, steps)
    away = ~restart_cycles(kwargs, steps)[0] if cls == "CosineDecayRestarts" else steps >= 0
    if cls == "CosineDecayRestarts":  # a float32 run can be wrong a step or two after a start
        away &= ~np.isin(steps, [s + 1 for s in steps[~away]])
    tight = 1e-5 if BACKEND == "torch" else 1e-7
    for run, rtol in ((keras_float64, tight),
                      (keras_float32, f32_rtol(cls, kwargs, reference, 1e-5))):
        theirs = run(cls, kwargs, steps)
        rtol = np.broadcast_to(rtol, steps.shape)[away]
        bad = np.abs(theirs[away] - reference[away]) > (rtol * np.abs(reference[away])
                                                         + 1e-5 * np.abs(reference).max())
        assert not bad.any(), (run.__name__, steps[away][bad], theirs[away][bad],
                               reference[away][bad])


def test_cycle_starts_are_checked_against_exact_arithmetic():
    """The cases with whole cycle starts do reach the exact branch of the check, and there
    stepsched gives the new cycle's first value (Keras's float32 may give the old one's end)."""
    cls, kwargs = SAME_ARGS["CosineDecayRestarts-t_mul=1.25"]
    ours = ss.CosineDecayRestarts(**kwargs)
    starts = [16, 36, 61]  # 16, 16 + 20, 16 + 20 + 25
    near, exact = restart_cycles(kwargs, starts)
    assert near.all() and np.allclose(exact, 1.0)
    assert ours.at(starts).tolist() == [1.0, 1.0, 1.0]
    assert graph_values(ours, starts).tolist() == [1.0, 1.0, 1.0]
    assert check_counterpart(cls, kwargs, ours.at(range(N)), np.arange(N)) >= 3


# (Keras schedule, stepsched one-liner) -- the docs' "or, composed" column
ONE_LINERS = {
    "ExponentialDecay": (("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=37,
                                                   decay_rate=0.9, staircase=True)),
                         ss.Exponential(0.1, 0.9, every=37, staircase=True)),
    # Keras switches one step after each boundary: Piecewise switches at it, so shift by one.
    "PiecewiseConstantDecay": (("PiecewiseConstantDecay", dict(boundaries=[10, 100],
                                                               values=[1.0, 0.5, 0.1])),
                               ss.Piecewise([11, 101], [1.0, 0.5, 0.1])),
    "PolynomialDecay": (("PolynomialDecay", dict(initial_learning_rate=0.5, decay_steps=150,
                                                 end_learning_rate=0.01, power=2.0)),
                        ss.Polynomial(0.5, 0.01, 150, power=2.0)),
    "CosineDecay-warmup": (("CosineDecay", dict(initial_learning_rate=0.01, decay_steps=300,
                                                alpha=0.05, warmup_target=0.4, warmup_steps=45)),
                           ss.Warmup(45, start=0.01) >> ss.Cosine(0.4, 0.4 * 0.05, 300)),
    "InverseTimeDecay": (("InverseTimeDecay", dict(initial_learning_rate=0.2, decay_steps=20,
                                                   decay_rate=0.5)),
                         ss.InversePower(0.2, 20 / 0.5, power=1.0)),
    "CosineDecayRestarts": (("CosineDecayRestarts", dict(initial_learning_rate=0.3,
                                                         first_decay_steps=20, t_mul=2.0,
                                                         m_mul=0.7, alpha=0.1)),
                            ss.Restarts(ss.Cosine(0.27, 0.0, 20), period_mult=2, scale=0.7)
                            + 0.03),
}


@pytest.mark.parametrize("name", list(ONE_LINERS))
@pytest.mark.backend_independent
def test_keras_one_liner(name):
    (cls, kwargs), ours = ONE_LINERS[name]
    check_counterpart(cls, kwargs, ours.at(range(N)), np.arange(N))


@pytest.mark.backend_independent
def test_piecewise_conventions_differ_by_one_step():
    keras_style = ss.PiecewiseConstantDecay([10], [1.0, 0.1]).at([10, 11])
    torch_style = ss.Piecewise([10], [1.0, 0.1]).at([10, 11])
    assert keras_style.tolist() == [1.0, pytest.approx(0.1)]
    assert torch_style.tolist() == [pytest.approx(0.1), pytest.approx(0.1)]


@pytest.mark.backend_independent
def test_the_examples_of_the_report_are_accepted_and_match():
    """issue 11 #5: each was refused, with a message naming arguments the class lacks."""
    for cls, kwargs in [("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=100,
                                                  decay_rate=1.05)),
                        ("CosineDecayRestarts", dict(initial_learning_rate=0.1,
                                                     first_decay_steps=10, m_mul=1.5)),
                        ("PiecewiseConstantDecay", dict(boundaries=[-1, 5],
                                                        values=[1.0, 0.5, 0.1]))]:
        steps = np.arange(0, 5000, 7)
        check_counterpart(cls, kwargs, getattr(ss, cls)(**kwargs).at(steps), steps)


def test_growth_past_float32_is_inf_as_in_keras():
    """A growing schedule is finite while Keras's is, and inf (never NaN) where Keras's
    overflows float32."""
    for cls, kwargs in [("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=100,
                                                  decay_rate=1.05)),
                        ("CosineDecayRestarts", dict(initial_learning_rate=0.1,
                                                     first_decay_steps=10, t_mul=1.0,
                                                     m_mul=1.5)),
                        ("CosineDecayRestarts", dict(initial_learning_rate=1.0,
                                                     first_decay_steps=1e-30, t_mul=1e30,
                                                     m_mul=1e30))]:
        ours = getattr(ss, cls)(**kwargs)
        steps = np.array([0, 1, 2, 5, 10, 100, 1000, 2000, 2100, 10**5, 10**6, 2**31 - 1])
        theirs = keras_reference(cls, kwargs, steps)
        finite = np.abs(theirs) <= F32_MAX
        rtol = f32_rtol(cls, kwargs, theirs[finite], 2e-6) if JAX_F32 else 1e-6
        for values, tol in ((ours.at(steps), 1e-6), (graph_values(ours, steps), rtol)):
            assert not np.isnan(values).any(), values
            assert_conforms(values[finite], theirs[finite], rtol=tol)
            assert np.isinf(values[~finite]).all(), values
        assert (~finite).any()


# ----------------------------------------------------------------------------- the domain
ARGS = {  # Keras's argument names per class (an error must name one)
    "ExponentialDecay": ("initial_learning_rate", "decay_steps", "decay_rate", "staircase"),
    "PiecewiseConstantDecay": ("boundaries", "values"),
    "PolynomialDecay": ("initial_learning_rate", "decay_steps", "end_learning_rate", "power",
                        "cycle"),
    "InverseTimeDecay": ("initial_learning_rate", "decay_steps", "decay_rate", "staircase"),
    "CosineDecay": ("initial_learning_rate", "decay_steps", "alpha", "warmup_target",
                    "warmup_steps"),
    "CosineDecayRestarts": ("initial_learning_rate", "first_decay_steps", "t_mul", "m_mul",
                            "alpha"),
}

_finite = dict(allow_nan=False, allow_infinity=False)
#: a learning rate or a factor: Keras takes any number (we draw within float32, which Keras
#: casts to: beyond it its value is inf)
rates = st.one_of(st.floats(-10, 10, **_finite), st.floats(-F32_MAX, F32_MAX, **_finite),
                  st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0]))
#: decay_steps: Keras requires > 0, nothing more (floats too, even past float32's range)
lengths = st.one_of(st.integers(1, 10_000), st.floats(1e-3, 1e4, **_finite),
                    st.sampled_from([1e-30, 0.5, 0.25, 1.0, 1e30, 3e38, 1e308]))
#: optimizer steps: the start of the run, and anywhere up to int32's end
step_lists = st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=6)

DOMAIN = {
    "ExponentialDecay": st.fixed_dictionaries(dict(
        initial_learning_rate=rates, decay_steps=lengths, decay_rate=rates,
        staircase=st.booleans())),
    "PiecewiseConstantDecay": st.integers(1, 6).flatmap(lambda n: st.fixed_dictionaries(dict(
        # any numbers in the step's integer range (Keras casts them to it), any order
        boundaries=st.lists(st.one_of(st.integers(-5, 200), st.floats(-2**31, 2**31 - 1,
                                                                       **_finite)),
                            min_size=n, max_size=n),
        values=st.lists(rates, min_size=n + 1, max_size=n + 1)))),
    "PolynomialDecay": st.fixed_dictionaries(dict(
        initial_learning_rate=rates, decay_steps=lengths, end_learning_rate=rates,
        power=st.one_of(st.floats(-3, 5, **_finite), st.sampled_from([0.0, 1.0, 2.0])),
        cycle=st.booleans())),
    "InverseTimeDecay": st.fixed_dictionaries(dict(
        initial_learning_rate=rates, decay_steps=lengths, decay_rate=rates,
        staircase=st.booleans())),
    "CosineDecay": st.fixed_dictionaries(dict(
        initial_learning_rate=rates, decay_steps=lengths, alpha=rates,
        warmup_target=st.one_of(st.none(), rates),
        warmup_steps=st.one_of(st.integers(-50, 500), st.floats(-1e4, 1e4, **_finite),
                               st.just(0)))),
    "CosineDecayRestarts": st.fixed_dictionaries(dict(
        initial_learning_rate=rates, first_decay_steps=lengths,
        t_mul=st.one_of(st.floats(-1, 4, **_finite), st.sampled_from([1.0, 1.5, 2.0, 0.5])),
        m_mul=rates, alpha=rates)),
}


def _witnesses(cls: str, kw: dict) -> list[float]:
    """Steps where Keras's formula may be undefined for these arguments (a fractional power
    of a negative number, a pole, the end of shrinking cycles), to evaluate Keras at."""
    out = [1.0, 2.0, 3.0]
    d = kw.get("decay_steps", kw.get("first_decay_steps"))
    if d is not None:
        out += [math.ceil(d), math.ceil(d) + 1.0, 2 * math.ceil(d)]
    r = kw.get("decay_rate")
    if cls == "InverseTimeDecay" and r < 0:
        pole = -d / r
        out += [math.floor(pole), math.ceil(pole)]
        k = round(-1.0 / r)
        out += [math.ceil(p * d) for p in (k - 1, k, k + 1) if p >= 0]
    if cls == "PolynomialDecay" and d < 2.0**63:  # the first step that is a multiple of d
        out.append(float(Fraction(d).numerator))
    if cls == "CosineDecayRestarts" and 0 < kw["t_mul"] < 1:
        end = d / (1.0 - kw["t_mul"])
        out += [math.ceil(end), math.ceil(end) + 1.0]
    return [s for s in out if 0 <= s < 2.0**63]


def _keras_is_non_finite(cls: str, kw: dict) -> bool:
    steps = np.asarray(_witnesses(cls, kw), np.float64)
    if cls == "PiecewiseConstantDecay":
        steps = steps[steps < 2**31]
    with np.errstate(all="ignore"):
        values = [keras_reference(cls, kw, steps)]
        if steps.max() < 2**24:  # exact in float32
            values.append(keras_float32(cls, kw, steps))
    return any((~np.isfinite(v) | (np.abs(v) > F32_MAX)).any() for v in values)


@pytest.mark.parametrize("cls", sorted(DOMAIN))
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_everything_keras_accepts_and_keeps_finite_is_accepted_and_matches(cls, data):
    kw = data.draw(DOMAIN[cls], label="arguments")
    steps = np.unique(np.concatenate([np.arange(0, 40), data.draw(step_lists, label="steps"),
                                      np.asarray(_witnesses(cls, kw), np.float64)]))
    steps = steps[steps <= 2**31 - 1]
    try:
        getattr(KS, cls)(**kw)
    except (ValueError, TypeError):
        with pytest.raises((ValueError, TypeError)):
            getattr(ss, cls)(**kw)
        return
    try:
        ours = getattr(ss, cls)(**kw)
    except (ValueError, TypeError) as err:
        assert any(name in str(err) for name in ARGS[cls]), f"names no Keras argument: {err}"
        assert _keras_is_non_finite(cls, kw), f"refused, but Keras is finite: {err}"
        return
    with np.errstate(all="ignore"):
        theirs = keras_reference(cls, kw, steps)
        values = ours.at(steps)
    finite = np.isfinite(theirs) & (np.abs(theirs) <= F32_MAX)
    assert np.isfinite(values[finite]).all()
    if cls == "CosineDecayRestarts":  # see check_counterpart
        near, exact = restart_cycles(kw, steps)
        early = finite & ~near & (steps < 1000)
        if early.any():
            assert_conforms(theirs[early], exact[early], rtol=1e-5,
                            peak=np.abs(theirs[early]).max())
        theirs = np.where(finite, exact, theirs)
    if finite.any():
        assert_conforms(values[finite], theirs[finite], peak=np.abs(theirs[finite]).max())
    overflow = np.isfinite(theirs) & (np.abs(theirs) > F32_MAX * (1 + 1e-6))
    assert np.isinf(values[overflow]).all()
