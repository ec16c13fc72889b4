"""Conformance with Keras's own ``keras.optimizers.schedules`` classes.

Each Keras schedule is evaluated at every step of the run and past it on the
current backend and compared with its stepsched counterpart (same class name,
same arguments) and, where the row of docs/migration.md says so, with a
one-liner of primitives. Keras computes in float32: rtol=1e-6 plus an
absolute 1e-6 x the peak for values near 0.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.conftest import BACKEND, graph_values

KS = keras.optimizers.schedules
N = 300


def run_keras(schedule, n=N):
    """Keras's value at each step 0..n-1, one scalar step at a time.

    (Several Keras schedules branch with ``ops.cond`` or assign into a scalar, so
    they accept only a scalar step.)
    """
    steps = np.arange(n, dtype="int32")
    if BACKEND == "jax":
        import jax

        out = jax.jit(jax.vmap(schedule))(steps)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        out = tf.function(lambda s: tf.map_fn(schedule, s, fn_output_signature="float32"))(
            tf.constant(steps))
    else:
        out = [keras.ops.convert_to_numpy(schedule(keras.ops.convert_to_tensor(t)))
               for t in steps]
    return np.asarray(out, np.float64).reshape(n)


def assert_conforms(ours, theirs):
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * np.abs(theirs).max())


# name -> (class name, kwargs); both libraries take the same arguments
SAME_ARGS = {
    "ExponentialDecay": ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=37,
                                                  decay_rate=0.9)),
    "ExponentialDecay-staircase": ("ExponentialDecay", dict(initial_learning_rate=0.1,
                                                            decay_steps=37, decay_rate=0.5,
                                                            staircase=True)),
    "PiecewiseConstantDecay": ("PiecewiseConstantDecay",
                               dict(boundaries=[10, 100, 101, 250], values=[1.0, 0.5, 0.3, 0.2,
                                                                            0.01])),
    "PolynomialDecay": ("PolynomialDecay", dict(initial_learning_rate=0.5, decay_steps=150,
                                                end_learning_rate=0.01, power=2.0)),
    "PolynomialDecay-cycle": ("PolynomialDecay", dict(initial_learning_rate=0.5, decay_steps=70,
                                                      end_learning_rate=0.05, power=0.5,
                                                      cycle=True)),
    "InverseTimeDecay": ("InverseTimeDecay", dict(initial_learning_rate=0.2, decay_steps=20,
                                                  decay_rate=0.5)),
    "InverseTimeDecay-staircase": ("InverseTimeDecay", dict(initial_learning_rate=0.2,
                                                            decay_steps=20, decay_rate=0.5,
                                                            staircase=True)),
    "CosineDecay": ("CosineDecay", dict(initial_learning_rate=0.3, decay_steps=333, alpha=0.1)),
    "CosineDecay-warmup": ("CosineDecay", dict(initial_learning_rate=0.01, decay_steps=300,
                                               alpha=0.05, warmup_target=0.4, warmup_steps=45)),
    "CosineDecayRestarts": ("CosineDecayRestarts", dict(initial_learning_rate=0.3,
                                                        first_decay_steps=50)),
    "CosineDecayRestarts-t_mul=2-m_mul-alpha": (
        "CosineDecayRestarts", dict(initial_learning_rate=0.3, first_decay_steps=20, t_mul=2.0,
                                    m_mul=0.7, alpha=0.1)),
    "CosineDecayRestarts-t_mul=1.5": (
        "CosineDecayRestarts", dict(initial_learning_rate=1.0, first_decay_steps=16, t_mul=1.5,
                                    m_mul=0.9)),
}


@pytest.mark.parametrize("name", list(SAME_ARGS))
def test_keras_counterpart(name):
    cls, kwargs = SAME_ARGS[name]
    theirs = run_keras(getattr(KS, cls)(**kwargs))
    ours = getattr(ss, cls)(**kwargs)
    assert_conforms(ours.at(range(N)), theirs)
    assert_conforms(graph_values(ours, np.arange(N)), theirs)


# (Keras schedule, stepsched one-liner of primitives) -- the docs' "or, composed" column
ONE_LINERS = {
    "ExponentialDecay": (KS.ExponentialDecay(0.1, 37, 0.9, staircase=True),
                         ss.Exponential(0.1, 0.9, every=37, staircase=True)),
    # Keras switches one step after each boundary: Piecewise switches at it, so shift by one.
    "PiecewiseConstantDecay": (KS.PiecewiseConstantDecay([10, 100], [1.0, 0.5, 0.1]),
                               ss.Piecewise([11, 101], [1.0, 0.5, 0.1])),
    "PolynomialDecay": (KS.PolynomialDecay(0.5, 150, 0.01, power=2.0),
                        ss.Polynomial(0.5, 0.01, 150, power=2.0)),
    "CosineDecay-warmup": (KS.CosineDecay(0.01, 300, alpha=0.05, warmup_target=0.4,
                                          warmup_steps=45),
                           ss.Warmup(45, start=0.01) >> ss.Cosine(0.4, 0.4 * 0.05, 300)),
    "InverseTimeDecay": (KS.InverseTimeDecay(0.2, 20, 0.5),
                         ss.InversePower(0.2, 20 / 0.5, power=1.0)),
    "CosineDecayRestarts": (KS.CosineDecayRestarts(0.3, 20, t_mul=2.0, m_mul=0.7, alpha=0.1),
                            ss.Restarts(ss.Cosine(0.27, 0.0, 20), period_mult=2, decay=0.7)
                            + 0.03),
}


@pytest.mark.parametrize("name", list(ONE_LINERS))
def test_keras_one_liner(name):
    theirs_schedule, ours = ONE_LINERS[name]
    assert_conforms(ours.at(range(N)), run_keras(theirs_schedule))


def test_piecewise_conventions_differ_by_one_step():
    keras_style = ss.PiecewiseConstantDecay([10], [1.0, 0.1]).at([10, 11])
    torch_style = ss.Piecewise([10], [1.0, 0.1]).at([10, 11])
    assert keras_style.tolist() == [1.0, pytest.approx(0.1)]
    assert torch_style.tolist() == [pytest.approx(0.1), pytest.approx(0.1)]
