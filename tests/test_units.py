"""Units from fit's batch size: samples, tokens and the batch-size scaling rule.

Exact by the one-hot probe of tests/test_exactness.py, with each row repeated
``batch`` times so that a batch is ``batch`` copies of one one-hot row: the
loss (the mean output) still has gradient ``e_k``, and ``-w[k]`` is the rate
applied at step ``k``.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import stepsched as ss
from stepsched.durations import UnresolvedDurationError
from stepsched.schedules.batch import has_batch_units, resolve_batch
from tests.test_exactness import RTOL, applied, onehot_data, onehot_model


def batched_data(n, batch):
    x, y = onehot_data(n)
    return np.repeat(x, batch, axis=0), np.repeat(y, batch, axis=0)


def fit(model, n, batch, **kwargs):
    x, y = batched_data(n, batch)
    kwargs.setdefault("callbacks", [ss.callbacks.Plan()])
    return model.fit(x, y, batch_size=batch, shuffle=False, verbose=0, **kwargs)


def test_durations_in_samples_and_tokens():
    assert ss.samples(640).to_steps(batch_size=64) == 10
    assert ss.tokens(4096, tokens_per_sample=128).to_steps(batch_size=8) == 4
    assert repr(ss.tokens(4096, 128)) == "tokens(4096, tokens_per_sample=128)"
    for d in (ss.samples(640), ss.tokens(4096, 128)):
        back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(d))
        assert back == d and hash(back) == hash(d)
    assert ss.samples(8) != ss.steps(8) and ss.tokens(8, 2) != ss.tokens(8, 4)
    with pytest.raises(UnresolvedDurationError, match="batch size"):
        ss.samples(8).to_steps(10, 100)
    with pytest.raises(ValueError, match="tokens_per_sample"):
        ss.Duration("samples", 8, per=2)


@pytest.mark.backend_independent
def test_resolve_batch_rewrites_a_copy():
    s = ss.Warmup(ss.samples(640)) >> ss.Linear(1.0, 0.0, ss.tokens(2**16, 256))
    assert has_batch_units(s)
    r = resolve_batch(s, 64)
    assert not has_batch_units(r) and r.duration == 10 + 4
    assert has_batch_units(s)  # the schedule as written is unchanged
    np.testing.assert_array_equal(r.at(range(20)), (ss.Warmup(10) >> ss.Linear(1.0, 0.0, 4))
                                  .at(range(20)))
    # under gradient accumulation a step of PerUpdate is an update of k batches
    p = resolve_batch(ss.Linear(1.0, 0.0, ss.samples(640)).per_update(2), 64)
    assert p.duration == 10
    assert resolve_batch(ss.Linear(1.0, 0.0, 10), 64) is not None
    plain = ss.Linear(1.0, 0.0, 10)
    assert resolve_batch(plain, 64) is plain


@pytest.mark.parametrize(("rule", "factor"), [("linear", 4.0), ("sqrt", 2.0)])
def test_batch_scaled_formula_and_round_trip(rule, factor):
    s = ss.BatchScaled(ss.WarmupCosine(0.1, 5, 20), base_batch_size=16, rule=rule,
                       batch_size=64)
    np.testing.assert_allclose(s.at(range(25)),
                               ss.WarmupCosine(0.1, 5, 20).at(range(25)) * factor, rtol=1e-6)
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    np.testing.assert_array_equal(back.at(range(25)), s.at(range(25)))
    from tests.conftest import graph_values

    steps = [0, 3, 5, 19, 2**24 + 1, 2**31 - 1]
    np.testing.assert_allclose(graph_values(s, steps), s.at(steps), rtol=2e-6, atol=1e-8)
    with pytest.raises(UnresolvedDurationError, match="batch size"):
        ss.BatchScaled(ss.Constant(0.1), 16).at(0)


def test_samples_are_resolved_from_the_batch_size_of_fit(tmp_path):
    n, batch = 24, 4
    lr = ss.Warmup(ss.samples(16)) >> ss.Linear(0.5, 0.05, ss.tokens(40 * 32, 32))
    model = onehot_model(lr, n)
    fit(model, n, batch)
    expected = (ss.Warmup(4) >> ss.Linear(0.5, 0.05, 10)).at(range(n))
    np.testing.assert_allclose(applied(model), expected, rtol=RTOL)
    assert has_batch_units(lr)  # the schedule as written is unchanged
    # the plan keeps the schedule as written and the batch size it was planned for
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    rate = loaded.optimizer._learning_rate
    assert rate.arg("batch_size") == batch and has_batch_units(rate.arg("schedule"))
    np.testing.assert_allclose(np.asarray(rate.at(range(n)), np.float64), expected, rtol=RTOL)


def by_samples(schedule, seen) -> np.ndarray:
    """float64 reference: ``schedule`` with its samples durations counted in samples (one
    sample a step), at the samples seen before each step."""
    return np.asarray(resolve_batch(schedule, 1).at(np.asarray(seen, np.float64)), np.float64)


@pytest.mark.parametrize("second", [8, 2])
def test_a_later_fit_with_another_batch_size_continues_in_samples(second):
    """12 steps of 4 samples, then 12 of ``second``: the warmup and decay in samples end
    after as many samples whatever the batch size, and ``BatchScaled`` follows the batch
    size of each fit (the second fit plans the schedule again, continuing at the samples
    seen)."""
    first, n = 4, 24
    written = ss.Warmup(ss.samples(16)) >> ss.Linear(0.5, 0.05, ss.tokens(60 * 32, 32))
    lr = ss.BatchScaled(written, base_batch_size=4, rule="linear")
    model = onehot_model(lr, n)
    x, y = onehot_data(n)
    model.fit(np.repeat(x[:12], first, axis=0), np.repeat(y[:12], first, axis=0),
              batch_size=first, shuffle=False, verbose=0, callbacks=[ss.callbacks.Plan()])
    with pytest.warns(UserWarning, match=f"batch_size=4 -> .*batch_size={second}.*continue"):
        model.fit(np.repeat(x[12:], second, axis=0), np.repeat(y[12:], second, axis=0),
                  batch_size=second, shuffle=False, verbose=0,
                  callbacks=[ss.callbacks.Plan()])
    seen = [first * k for k in range(12)] + [12 * first + second * k for k in range(12)]
    factor = np.array([first / 4] * 12 + [second / 4] * 12)
    np.testing.assert_allclose(applied(model), by_samples(written, seen) * factor, rtol=RTOL)
    # what the optimizer holds gives the same values on the host (at, plots, the logger)
    rate = model.optimizer._learning_rate
    np.testing.assert_allclose(np.asarray(rate.at(range(n)), np.float64), applied(model),
                               rtol=RTOL)
    assert rate.arg("batch_size") == second and rate.arg("previous").arg("batch_size") == first


@pytest.mark.parametrize("rule", ["linear", "sqrt"])
def test_batch_size_scaling_rule_is_resolved_at_fit(rule):
    n = 12
    lr = ss.BatchScaled(ss.Warmup(3) >> ss.Constant(0.1), base_batch_size=2, rule=rule)
    model = onehot_model(lr, n)
    fit(model, n, 8)
    factor = 4.0 if rule == "linear" else 2.0
    np.testing.assert_allclose(applied(model), (ss.Warmup(3) >> ss.Constant(0.1)).at(range(n))
                               * factor, rtol=RTOL)
    assert model.optimizer._learning_rate.arg("batch_size") == 8


def test_a_generator_without_a_batch_size_fails_clearly():
    model = onehot_model(ss.Linear(1.0, 0.0, ss.samples(64)), 4)
    x, y = onehot_data(4)

    def batches():
        while True:
            yield x[:1], y[:1]

    with pytest.raises(UnresolvedDurationError, match="batch size of this fit"):
        model.fit(batches(), steps_per_epoch=2, epochs=1, shuffle=False, verbose=0,
                  callbacks=[ss.callbacks.Plan()])


# --------------------------------------------------------------------- replicas
# the probe run by tests/test_distribution.py's scripts (two replicas, one sample each)
SCALED_PROBE = """
import stepsched as ss
from tests.test_exactness import applied, onehot_data, onehot_model
LR = ss.BatchScaled(ss.Warmup(ss.samples(8)) >> ss.Constant(0.1), base_batch_size=1,
                    rule="sqrt")

def run(spe):
    x, y = onehot_data(N)
    x, y = np.repeat(x, 2, axis=0), np.repeat(y, 2, axis=0)  # global batch = [e_k, e_k]
    with scope():
        model = onehot_model(LR, N, steps_per_execution=spe)
    model.fit(x, y, batch_size=2, shuffle=False, epochs=1, verbose=0,
              callbacks=[ss.callbacks.Plan()])
    rate = model.optimizer._learning_rate  # planned for the batch size it read
    return {"rates": applied(model).tolist(), "batch": rate.arg("batch_size"),
            "replicas": replicas(model),
            "iterations": int(np.asarray(model.optimizer.iterations))}
"""


@pytest.mark.skipif(keras.backend.backend() not in ("tensorflow", "jax"),
                    reason="tf.distribute (TensorFlow) or keras.distribution (JAX)")
def test_data_parallel_resolves_samples_and_scaling_from_the_global_batch():
    from tests.test_distribution import N, run_script

    expected = (ss.Warmup(4) >> ss.Constant(0.1)).at(range(N)) * np.sqrt(2.0)
    for run in run_script(SCALED_PROBE).values():
        assert run["batch"] == 2  # the global batch, not the per-replica 1
        np.testing.assert_allclose(run["rates"], expected, rtol=RTOL)
