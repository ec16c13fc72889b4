"""Conformance with optax's schedules, value for value.

optax schedules are pure functions of the step; each is evaluated over a whole
array of steps (the run and well past its end) and compared with the stepsched
one-liner of docs/migration.md. optax computes in float32 (JAX's default), so
a float32 rounding of a few ulps is tolerated: rtol=1e-6 plus an absolute
1e-6 x the peak for values near 0.
"""

from __future__ import annotations

import numpy as np
import pytest

import stepsched as ss

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")

# the reference library against stepsched's host values (NumPy): no Keras backend
pytestmark = pytest.mark.backend_independent

N = 400  # every case is compared over steps 0..N-1, past the end of each run


def run_optax(schedule, n=N):
    # vmap: some optax schedules (piecewise_interpolate_schedule) take a scalar step only
    return np.asarray(jax.vmap(schedule)(jax.numpy.arange(n)), np.float64)


# (optax schedule, stepsched one-liner)
CASES = {
    "warmup_cosine_decay_schedule": (
        optax.warmup_cosine_decay_schedule(init_value=0.01, peak_value=1.0, warmup_steps=37,
                                           decay_steps=250, end_value=0.05),
        ss.WarmupCosine(peak=1.0, warmup=37, total=250, start=0.01, end=0.05)),
    "warmup_cosine_decay_schedule-exponent": (
        optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=3e-4, warmup_steps=10,
                                           decay_steps=333, end_value=3e-5, exponent=2.0),
        ss.WarmupCosine(peak=3e-4, warmup=10, total=333, end=3e-5, exponent=2.0)),
    "warmup_cosine_decay_schedule-no-warmup": (
        optax.warmup_cosine_decay_schedule(init_value=0.5, peak_value=0.5, warmup_steps=0,
                                           decay_steps=100),
        ss.WarmupCosine(peak=0.5, warmup=0, total=100)),
    "exponential_decay": (
        optax.exponential_decay(init_value=1.0, transition_steps=10, decay_rate=0.9),
        ss.Exponential(1.0, 0.9, every=10)),
    "exponential_decay-staircase-begin-end": (
        optax.exponential_decay(init_value=1.0, transition_steps=10, decay_rate=0.9,
                                transition_begin=25, staircase=True, end_value=0.3),
        ss.Constant(1.0, 25) >> ss.Exponential(1.0, 0.9, every=10, staircase=True, limit=0.3)),
    "exponential_decay-growth-ceiling": (
        optax.exponential_decay(init_value=0.01, transition_steps=5, decay_rate=1.1,
                                end_value=0.5),
        ss.Exponential(0.01, 1.1, every=5, limit=0.5)),
    "cosine_decay_schedule-exponent": (
        optax.cosine_decay_schedule(init_value=0.5, decay_steps=120, alpha=0.1, exponent=3.0),
        ss.Cosine(0.5, 0.05, 120, exponent=3.0)),
    "linear_schedule-begin": (
        optax.linear_schedule(init_value=0.2, end_value=1.0, transition_steps=60,
                              transition_begin=15),
        ss.Constant(0.2, 15) >> ss.Linear(0.2, 1.0, 60)),
    "polynomial_schedule-begin": (
        optax.polynomial_schedule(init_value=1.0, end_value=0.01, power=2.5,
                                  transition_steps=80, transition_begin=10),
        ss.Constant(1.0, 10) >> ss.Polynomial(1.0, 0.01, 80, power=2.5)),
    "piecewise_constant_schedule": (
        optax.piecewise_constant_schedule(0.5, {30: 0.5, 70: 0.2, 71: 3.0}),
        ss.Piecewise([30, 70, 71], [0.5, 0.25, 0.05, 0.15])),
    "join_schedules": (
        optax.join_schedules([optax.linear_schedule(0.0, 1.0, 20),
                              optax.cosine_decay_schedule(1.0, 100)], [20]),
        ss.Linear(0.0, 1.0, 20) >> ss.Cosine(1.0, 0.0, 100)),
    "sgdr_schedule": (
        optax.sgdr_schedule([
            dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=50, end_value=0.01),
            dict(init_value=0.0, peak_value=0.5, warmup_steps=10, decay_steps=100)]),
        ss.WarmupCosine(1.0, 5, 50, end=0.01) >> ss.WarmupCosine(0.5, 10, 100)),
    "sgdr_schedule-identical-cycles": (
        optax.sgdr_schedule([dict(init_value=0.1, peak_value=1.0, warmup_steps=7,
                                  decay_steps=60, end_value=0.02)] * 4),
        ss.Restarts(ss.WarmupCosine(1.0, 7, 60, start=0.1, end=0.02), limit=4)),
    "cosine_onecycle_schedule": (
        optax.cosine_onecycle_schedule(transition_steps=101, peak_value=0.8, pct_start=0.25,
                                       div_factor=20.0, final_div_factor=500.0),
        ss.Interpolate([0, int(0.25 * 101), 101], [0.8 / 20, 0.8, 0.8 / 20 / 500],
                       kind="cosine")),
    "linear_onecycle_schedule": (
        optax.linear_onecycle_schedule(transition_steps=90, peak_value=1.0),
        ss.Interpolate([0, int(0.3 * 90), int(0.85 * 90), 90],
                       [1.0 / 25, 1.0, 1.0 / 25, 1.0 / 25 / 1e4])),
    "warmup_exponential_decay_schedule": (
        optax.warmup_exponential_decay_schedule(init_value=0.0, peak_value=1.0, warmup_steps=20,
                                                transition_steps=15, decay_rate=0.5,
                                                transition_begin=10, staircase=True,
                                                end_value=0.01),
        ss.Linear(0.0, 1.0, 20) >> ss.Constant(1.0, 10)
        >> ss.Exponential(1.0, 0.5, every=15, staircase=True, limit=0.01)),
    "warmup_constant_schedule": (
        optax.warmup_constant_schedule(init_value=0.1, peak_value=2.0, warmup_steps=33),
        ss.Warmup(33, start=0.1) >> ss.Constant(2.0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_optax(name):
    theirs_fn, ours = CASES[name]
    theirs = run_optax(theirs_fn)
    np.testing.assert_allclose(ours.at(range(N)), theirs, rtol=1e-6,
                               atol=1e-6 * np.abs(theirs).max())
