"""The shared statistics: bias-corrected EMA and batch values from Keras's running mean."""

from __future__ import annotations

import doctest
import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepsched import _stats
from stepsched._stats import EMA, RunningMeanReader, ema, mean_since


@pytest.mark.backend_independent
def test_docstring_examples():
    failures, tried = doctest.testmod(_stats, optionflags=doctest.ELLIPSIS)
    assert tried >= 5 and failures == 0


# ------------------------------------------------------------------ EMA
@pytest.mark.backend_independent
def test_ema_formula_written_out():
    values, s = [3.0, 1.0, 2.0, -4.0], 0.9
    a, expected = 0.0, []
    for n, v in enumerate(values, start=1):
        a = s * a + (1 - s) * v
        expected.append(a / (1 - s ** n))
    np.testing.assert_allclose(ema(values, s), expected, rtol=1e-15)
    assert ema(values, s)[0] == pytest.approx(3.0, rel=1e-15)  # no pull towards 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.floats(0.0, 0.999),
       st.integers(0, 40))
@pytest.mark.backend_independent
def test_stream_array_and_resume_agree_exactly(values, s, cut):
    """Fed one by one, fed as an array, or stopped and resumed from its two numbers:
    the same float64 values, bit for bit."""
    cut = min(cut, len(values))
    stream = EMA(s)
    streamed = [stream.update(v) for v in values]
    np.testing.assert_array_equal(ema(values, s), streamed)
    first = EMA(s)
    for v in values[:cut]:
        first.update(v)
    resumed = EMA(s, average=first.average, count=first.count)
    np.testing.assert_array_equal([resumed.update(v) for v in values[cut:]], streamed[cut:])


@pytest.mark.backend_independent
def test_ema_constant_stream_and_zero_smoothing():
    np.testing.assert_allclose(ema([2.5] * 30, 0.98), [2.5] * 30, rtol=1e-14)
    np.testing.assert_array_equal(ema([1.0, 5.0, -2.0], 0.0), [1.0, 5.0, -2.0])
    assert math.isnan(EMA(0.9).value)
    assert ema([], 0.5).shape == (0,)


@pytest.mark.backend_independent
def test_ema_non_finite_propagates():
    out = ema([1.0, np.nan, 1.0], 0.5)
    assert out[0] == 1.0 and np.isnan(out[1:]).all()


@pytest.mark.parametrize("kwargs, name", [
    ({"smoothing": 1.0}, "smoothing"), ({"smoothing": -0.1}, "smoothing"),
    ({"smoothing": "0.9"}, "smoothing"), ({"smoothing": True}, "smoothing"),
    ({"smoothing": 0.5, "count": -1}, "count"), ({"smoothing": 0.5, "count": 1.5}, "count"),
    ({"smoothing": 0.5, "average": "x"}, "average"),
    ({"smoothing": 0.5, "average": 1.0, "count": 0}, "average"),
])
@pytest.mark.backend_independent
def test_ema_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        EMA(**kwargs)


@pytest.mark.backend_independent
def test_ema_state_from_json_floats():
    """A saved state comes back from JSON as floats (plateau state does)."""
    e = EMA(0.8)
    for v in (1.0, 2.0, 3.0):
        e.update(v)
    back = EMA(0.8, average=float(e.average), count=float(e.count))
    assert back.count == 3 and back.value == e.value


# ------------------------------------------------------------------ running mean
@pytest.mark.backend_independent
def test_mean_since_recovers_each_chunk_exactly_in_float64():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 9, size=30).astype(float)
    values = rng.normal(size=30)
    counts = np.cumsum(sizes)
    means = np.cumsum(sizes * values) / counts
    reader = RunningMeanReader()
    recovered = [reader.read(m, c) for m, c in zip(means, counts, strict=True)]
    np.testing.assert_allclose(recovered, values, rtol=1e-9, atol=1e-12)
    # chunks of several batches (steps_per_execution): the chunk's weighted mean
    reader.reset()
    got = [reader.read(means[i], counts[i]) for i in (2, 5, 9)]
    for (lo, hi), value in zip([(0, 3), (3, 6), (6, 10)], got, strict=True):
        assert value == pytest.approx(np.average(values[lo:hi], weights=sizes[lo:hi]), rel=1e-9)


@pytest.mark.backend_independent
def test_reader_restarts_when_the_count_does_not_grow():
    reader = RunningMeanReader()
    assert reader.read(4.0, 2) == 4.0
    assert reader.read(3.0, 4) == 2.0
    assert reader.read(7.0, 2) == 7.0  # new epoch: counted from zero again
    assert reader.read(7.0, 2) == 7.0  # same count again is a restart too, never a 0/0
    with pytest.raises(ValueError, match="count"):
        reader.read(1.0, 0)
    with pytest.raises(ValueError, match="count"):
        mean_since(1.0, 2, 1.0, 2)


@pytest.mark.parametrize("unit", ["samples", "batches"])
def test_recovers_the_batch_loss_from_keras_logs(unit):
    """A real fit with a zero rate (the weights stay put), 7 batches of 16 then one of 4:
    each batch's loss is known in NumPy. Sample counts recover every batch, the
    short last one included; batch counts every batch but that one (its weight is
    wrong), and both stay within the documented float32 error."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(116, 3)).astype("float32")
    y = rng.normal(size=(116, 1)).astype("float32")
    w = rng.normal(size=(3, 1)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign(w)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    reader, recovered = RunningMeanReader(), []

    class Read(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            count = min(16 * (batch + 1), 116) if unit == "samples" else batch + 1
            recovered.append(reader.read(logs["loss"], count))

    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[Read()])
    err = x.astype(np.float64) @ w.astype(np.float64) - y
    truth = [float(np.mean(err[i:i + 16] ** 2)) for i in range(0, 116, 16)] * 2
    assert len(recovered) == 16
    ok = slice(None) if unit == "samples" else [i for i in range(16) if i % 8 != 7]
    np.testing.assert_allclose(np.asarray(recovered)[ok], np.asarray(truth)[ok],
                               rtol=8 * 2 * np.finfo(np.float32).eps * 10)
    if unit == "batches":
        assert abs(recovered[7] - truth[7]) > 1e-3 * truth[7]
