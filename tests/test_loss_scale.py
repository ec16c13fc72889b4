"""``stepsched.optimizers.LossScaleOptimizer``: schedules that count updates (Keras's) or
batches (``count="batches"``, as torch's ``scheduler.step()`` beside ``GradScaler``).

The loss scale starts too high, so the first steps overflow and are skipped, and grows
after every ``GROWTH`` finite steps, which overflows again: steps are skipped at the start
and in the middle of the run. The probe (``tests/probe.py``: ``dloss/dw`` is constant)
makes the pattern known in advance, worked out below in float64 from Keras's rule, and
every applied rate readable from the weight.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import stepsched as ss
import stepsched.optimizers as so
from conftest import BACKEND
from probe import ProbeLayer, WeightRecorder

N = 24  # batches
GROWTH = 3  # dynamic_growth_steps
GAIN = 16.0  # dloss/dw of the probe: the scaled gradient overflows at scale >= 2**124
SCALE = 2.0 ** 127
SPE = 1 if BACKEND == "torch" else 4  # torch runs one step per execution


def _linear(start, end, duration, t):
    """``ss.Linear(start, end, duration)`` at steps ``t``, written out in float64."""
    t = np.minimum(np.asarray(t, np.float64), duration)
    return start + (end - start) * t / duration


def _updates(n=N, scale=SCALE, growth=GROWTH, gain=GAIN) -> np.ndarray:
    """Whether each batch is a real update: Keras's dynamic loss scale on the probe's
    float32 gradient ``gain * scale`` (halved on overflow, doubled after ``growth``
    finite steps)."""
    out, counter = [], 0
    for _ in range(n):
        with np.errstate(over="ignore"):
            finite = bool(np.isfinite(np.float32(gain) * np.float32(scale)))
        out.append(finite)
        if finite:
            counter += 1
            if counter == growth:
                scale, counter = scale * 2, 0
        else:
            scale, counter = scale / 2, 0
    return np.asarray(out)


def _probe(optimizer, spe=1):
    inputs = keras.Input((1,))
    model = keras.Model(inputs, ProbeLayer()(inputs))
    model.compile(optimizer=optimizer, steps_per_execution=spe,
                  loss=lambda y_true, y_pred: GAIN * keras.ops.mean(y_pred, axis=-1))
    return model


def _fit_probe(model, n=N, callbacks=()):
    x = np.zeros((n, 1), "float32")
    recorder = WeightRecorder()
    model.fit(x, x, batch_size=1, shuffle=False, verbose=0,
              callbacks=[*callbacks, recorder])
    return recorder.rates() / GAIN  # the rate applied at each batch (0 where skipped)


def _wrapped(inner, count):
    return so.LossScaleOptimizer(inner, initial_scale=SCALE, dynamic_growth_steps=GROWTH,
                                 count=count)


def _int(variable) -> int:
    return int(keras.ops.convert_to_numpy(variable))


def test_the_run_skips_steps_at_the_start_and_in_the_middle():
    real = _updates()
    assert not real[:4].all() and not real[8:].all() and real.sum() >= N // 2


@pytest.mark.parametrize("count", ["updates", "batches"])
def test_the_rate_at_each_update_counts_what_is_asked(count):
    real = _updates()
    opt = _wrapped(so.SGD(ss.Linear(0.1, 0.0, N)), count)
    rates = _fit_probe(_probe(opt))
    np.testing.assert_array_equal(rates[~real], 0.0)  # skipped: the weight did not move
    at = np.arange(real.sum()) if count == "updates" else np.flatnonzero(real)
    np.testing.assert_allclose(rates[real], _linear(0.1, 0.0, N, at), rtol=1e-5, atol=1e-7)
    assert _int(opt.iterations) == real.sum()  # the inner optimizer counts updates
    assert ss._keras.read_step(opt) == (N if count == "batches" else real.sum())
    if count == "batches":
        assert _int(opt.skipped_steps) == N - real.sum()
    else:
        assert opt.skipped_steps is None


def test_the_logger_logs_the_rates_applied_when_counting_batches():
    real = _updates()
    schedule = ss.Linear(0.1, 0.0, N)
    logged = []

    class Logs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            logged.append(logs["learning_rate"])

    model = _probe(_wrapped(so.SGD(schedule), "batches"))
    rates = _fit_probe(model, callbacks=[ss.callbacks.LearningRateLogger(), Logs()])
    np.testing.assert_allclose(logged, _linear(0.1, 0.0, N, np.arange(N)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(logged)[real], rates[real], rtol=1e-5)
    # the epoch's value is the rate of its last step, read from the counter at the end
    assert model.history.history["learning_rate"] == [pytest.approx(schedule.at(N - 1))]


def test_a_group_schedule_counts_batches_too():
    real = _updates()
    group = so.Group("all", learning_rate=ss.Linear(0.1, 0.0, N),
                     multiplier=ss.Linear(1.0, 0.5, N))
    rates = _fit_probe(_probe(_wrapped(so.SGD(0.3, groups=[group]), "batches")))
    at = np.flatnonzero(real)
    np.testing.assert_allclose(rates[real], _linear(0.1, 0.0, N, at) * _linear(1.0, 0.5, N, at),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(rates[~real], 0.0)


def test_a_weights_file_keeps_the_skipped_steps(tmp_path):
    """What BackupAndRestore saves and restores: the wrapper's variables, its count too."""
    real = _updates()
    model = _probe(_wrapped(so.SGD(ss.Linear(0.1, 0.0, 2 * N)), "batches"))
    _fit_probe(model)
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    again = _probe(_wrapped(so.SGD(ss.Linear(0.1, 0.0, 2 * N)), "batches"))
    again.optimizer.build(again.trainable_variables)
    again.load_weights(path)
    assert _int(again.optimizer.skipped_steps) == N - real.sum()
    assert ss._keras.read_step(again.optimizer) == N
    np.testing.assert_array_equal(_fit_probe(again), _fit_probe(model))


# ------------------------------------------------------- a real model: the optimizer's math
def _data(n=64, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, (x @ rng.normal(size=(d, 2))).astype("float32")


def _model(optimizer, eager=False, spe=1):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2)(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=optimizer, loss="mse", run_eagerly=eager, steps_per_execution=spe,
                  jit_compile=BACKEND != "torch" and not eager)
    return model


def _flat(model):
    return np.concatenate([w.ravel() for w in model.get_weights()])


def _fit(model, x, y, callbacks=()):
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=list(callbacks))
    return _flat(model)


class _AssignAtBatch(keras.callbacks.Callback):
    """The reference: Keras's optimizer run eagerly, each value assigned before each batch
    from the schedule at the batch index (float64, written out)."""

    def __init__(self, values):
        super().__init__()
        self.values, self.seen = values, 0

    def on_train_batch_begin(self, batch, logs=None):
        inner = self.model.optimizer.inner_optimizer
        for name, fn in self.values.items():
            value = float(fn(self.seen))
            if name == "learning_rate":
                inner.learning_rate.assign(value)
            else:
                setattr(inner, name, value)
        self.seen += 1


def _keras_reference(inner, values, x, y):
    opt = keras.optimizers.LossScaleOptimizer(inner, initial_scale=SCALE,
                                              dynamic_growth_steps=GROWTH)
    model = _model(opt, eager=True)
    return _fit(model, x, y, callbacks=[_AssignAtBatch(values)]), opt


def test_adam_counts_its_updates_while_its_rate_counts_batches():
    x, y = _data()
    batches = 2 * len(x) // 4
    opt = _wrapped(so.Adam(ss.Linear(0.05, 0.0, batches)), "batches")
    ours = _fit(_model(opt, spe=SPE), x, y)
    reference, ref_opt = _keras_reference(
        keras.optimizers.Adam(0.05), {"learning_rate": lambda b: _linear(0.05, 0.0, batches, b)},
        x, y)
    updates = _int(ref_opt.iterations)
    assert 0 < updates < batches  # steps were skipped
    # the same weights: the moments and the bias correction at the updates made
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
    assert _int(opt.iterations) == updates
    assert _int(opt.skipped_steps) == batches - updates


def test_a_hyperparameter_schedule_counts_batches_too():
    x, y = _data()
    batches = 2 * len(x) // 4
    momentum = ss.Linear(0.95, 0.5, batches)
    opt = _wrapped(so.SGD(0.05, momentum=momentum), "batches")
    ours = _fit(_model(opt, spe=SPE), x, y)
    reference, ref_opt = _keras_reference(
        keras.optimizers.SGD(0.05, momentum=0.95),
        {"momentum": lambda b: _linear(0.95, 0.5, batches, b)}, x, y)
    assert 0 < _int(ref_opt.iterations) < batches
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_save_and_load_model_keep_count_and_the_skipped_steps(tmp_path):
    x, y = _data()
    opt = _wrapped(so.SGD(ss.Linear(0.05, 0.0, 64), momentum=0.9), "batches")
    model = _model(opt, spe=SPE)
    _fit(model, x, y)
    skipped = _int(opt.skipped_steps)
    assert skipped > 0
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    back = loaded.optimizer
    assert type(back) is so.LossScaleOptimizer and back.count == "batches"
    assert back.get_config()["count"] == "batches"
    assert _int(back.skipped_steps) == skipped
    assert ss._keras.read_step(back) == ss._keras.read_step(opt) == 32
    np.testing.assert_array_equal(_fit(loaded, x, y), _fit(model, x, y))
    assert _int(back.skipped_steps) == _int(opt.skipped_steps)


def test_bad_input_is_refused_at_construction():
    with pytest.raises(ValueError, match="count must be one of 'updates', 'batches'; got 'steps'"):
        so.LossScaleOptimizer(so.SGD(0.1), count="steps")
    with pytest.raises(ValueError, match=r"count='batches' needs a stepsched.optimizers "
                                         r"optimizer.*keras\..*SGD.*stepsched.optimizers.SGD"):
        so.LossScaleOptimizer(keras.optimizers.SGD(ss.Linear(0.1, 0.0, 10)), count="batches")
    # a frozen group's bias correction restarts at its unfreezing update (the raw counter)
    frozen = so.Adam(0.1, groups=[so.Group("head", frozen_until=4)])
    with pytest.raises(ValueError, match=r"count='batches' with groups frozen_until a step \(head\)"):
        so.LossScaleOptimizer(frozen, count="batches")
    assert so.LossScaleOptimizer(frozen).count == "updates"
    # the default, Keras's behaviour, takes any optimizer
    assert so.LossScaleOptimizer(keras.optimizers.SGD(0.1)).count == "updates"


def test_a_plain_schedule_with_stepsched_sgd_and_count_updates_is_kerass():
    """count="updates" is Keras's LossScaleOptimizer: same weights, same variables."""
    x, y = _data()
    schedule = ss.Linear(0.05, 0.0, 32)
    ours = _model(_wrapped(so.SGD(schedule, momentum=0.9), "updates"), spe=SPE)
    theirs = _model(keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(schedule, momentum=0.9), initial_scale=SCALE,
        dynamic_growth_steps=GROWTH), spe=SPE)
    # (torch: stepsched's SGD takes the per-variable update, Keras's its fused one)
    np.testing.assert_allclose(_fit(ours, x, y), _fit(theirs, x, y), rtol=1e-6, atol=1e-6)
    assert len(ours.optimizer.variables) == len(theirs.optimizer.variables)
