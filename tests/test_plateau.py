"""Plateau reduction: arguments, exact rates on the probe, torch conformance, save/resume."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import stepsched as ss
from stepsched.callbacks import ReduceLROnPlateau, Scaled
from tests.conftest import BACKEND
from tests.probe import WeightRecorder, probe_data, probe_model, weight

torch = pytest.importorskip("torch")


def torch_rates(values, lr=1.0, **kwargs):
    """The rate after each check, from torch's own ReduceLROnPlateau (lr=1: the multiplier)."""
    param = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([param], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for v in values:
        sched.step(float(v))
        out.append(opt.param_groups[0]["lr"])
    return np.asarray(out)


def torch_kwargs(mode="min", factor=0.1, patience=10, min_delta=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0):
    return dict(mode=mode, factor=factor, patience=patience, threshold=min_delta,
                threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr)


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize("kwargs, name", [
    ({"factor": 1.0}, "factor"), ({"factor": 0.0}, "factor"), ({"patience": -1}, "patience"),
    ({"mode": "auto"}, "mode"), ({"min_delta": -1.0}, "min_delta"),
    ({"threshold_mode": "relative"}, "threshold_mode"), ({"cooldown": 1.5}, "cooldown"),
    ({"min_lr": -1e-3}, "min_lr"), ({"every": 0}, "every"), ({"monitor": ""}, "monitor"),
    ({"every": 10, "smoothing": 1.0}, "smoothing"), ({"smoothing": 0.9}, "smoothing"),
    ({"every": 10, "monitor": "val_loss"}, "val_loss"),
])
@pytest.mark.backend_independent
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        ReduceLROnPlateau(**kwargs)


@pytest.mark.backend_independent
def test_epoch_checks_add_no_batch_hook():
    from keras.src import utils

    assert utils.is_default(ReduceLROnPlateau().on_train_batch_end)
    assert not utils.is_default(ReduceLROnPlateau(every=4).on_train_batch_end)


def test_keras_schedule_is_refused_with_the_counterpart():
    model = probe_model(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))
    with pytest.raises(TypeError, match=r"stepsched\.ExponentialDecay"):
        ReduceLROnPlateau().set_model(model)


# ------------------------------------------------------------------ conformance (epochs)
CONFIGS = {
    "patience": dict(patience=3, factor=0.5),
    "abs-cooldown": dict(patience=1, threshold_mode="abs", min_delta=0.05, cooldown=2,
                         factor=0.5),
    "max-rel": dict(mode="max", patience=1, min_delta=0.01, factor=0.5),
    "max-abs-min_lr": dict(mode="max", patience=0, threshold_mode="abs", min_delta=0.1,
                           factor=0.3, min_lr=2e-3),
    "min_lr-cooldown": dict(patience=0, factor=0.5, cooldown=1, min_lr=0.01),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_epoch_checks_match_torch(name):
    """Same metric sequence into both; the same rates after every epoch."""
    config = CONFIGS[name]
    rng = np.random.default_rng(len(name))
    # a noisy descent with long flat stretches, in float32 like Keras logs
    steps = rng.choice([0.0, 0.0, -0.2, -0.1, 0.1], size=60)
    metric = 3.0 + np.cumsum(steps) + rng.normal(scale=0.02, size=60)
    if config.get("mode") == "max":  # an accuracy-like metric: a noisy ascent
        metric = 6.0 - metric
    metric = metric.astype(np.float32)
    base = 0.1
    model = probe_model(base)
    callback = ReduceLROnPlateau(monitor="loss", **config)
    callback.set_model(model)
    callback.params = {"epochs": 60, "steps": 1}
    callback.on_train_begin()
    rates = []
    for epoch, value in enumerate(metric):
        callback.on_epoch_end(epoch, {"loss": float(value)})
        rates.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    expected = torch_rates(metric, lr=base, **torch_kwargs(**config))
    assert len(set(np.round(expected, 12))) > 2, "the sequence must trigger reductions"
    # torch skips reductions smaller than its eps=1e-8; stay clear of that regime
    assert expected.min() > 1e-7
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_reset_forgets_the_state():
    model = probe_model(0.1)
    callback = ReduceLROnPlateau(patience=0, factor=0.5)
    callback.set_model(model)
    for epoch, value in enumerate([1.0, 2.0, 3.0]):
        callback.on_epoch_end(epoch, {"loss": value})
    assert callback.multiplier == 0.25 and callback.plateau.values["best"] == 1.0
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == \
        pytest.approx(0.025)
    callback.reset()
    assert callback.multiplier == 1.0 and "best" not in callback.plateau.values
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.1)


def test_epoch_checks_in_real_training_monitor_val_loss():
    """every=None on val_loss during fit: the rate drops after patience+1 flat epochs."""
    model = probe_model(0.05)
    x, y = probe_data(4)
    # val_loss = w, which falls every epoch; mode="max" sees no improvement after epoch 0
    callback = ReduceLROnPlateau(monitor="val_loss", mode="max", patience=1, factor=0.5)
    recorder = WeightRecorder()
    model.fit(x, y, batch_size=2, epochs=5, validation_data=(x, y), shuffle=False, verbose=0,
              callbacks=[callback, recorder])
    rates = recorder.rates().reshape(5, 4)
    # checks after epochs 0..4: best at 0, bad at 1, 2 -> reduce after epoch 2, bad at 3, 4 -> reduce
    np.testing.assert_allclose(rates[:, 0], 0.05 * np.array([1, 1, 1, 0.5, 0.5]), rtol=1e-6)
    assert callback.multiplier == pytest.approx(0.25)


# ------------------------------------------------------------------ exact probe
SCHEDULE = ss.Warmup(6, start=0.2) >> ss.Exponential(1.0, 0.98)


def run_probe(steps_per_execution, every, smoothing=None, epochs=2, steps_per_epoch=32,
              schedule=SCHEDULE, **config):
    kwargs = {"steps_per_execution": steps_per_execution} if steps_per_execution > 1 else {}
    model = probe_model(schedule, **kwargs)
    callback = ReduceLROnPlateau(monitor="loss", every=every, smoothing=smoothing, **config)
    recorder = WeightRecorder()
    x, y = probe_data(steps_per_epoch)
    model.fit(x, y, batch_size=2, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[callback, recorder])
    return np.asarray(recorder.ws), callback


@pytest.mark.parametrize("smoothing, symbolic", [(None, False), (0.6, False), (None, True)])
def test_probe_rates_are_schedule_times_multiplier(smoothing, symbolic):
    """w differences = applied rates = schedule.at(t) * multiplier in force at t.

    The probe's batch loss at step t is w_t; checks run at steps 8, 16, ... on the
    loss of the batch just done (optionally its EMA); torch decides the multipliers.
    A schedule in epochs is resolved at fit time through the multiplier wrapper.
    """
    config = dict(mode="max", patience=1, cooldown=1, factor=0.5)
    schedule = (ss.Warmup(ss.epochs(0.25), start=0.2) >> ss.Exponential(1.0, 0.98)
                if symbolic else SCHEDULE)
    ws, callback = run_probe(1, every=8, smoothing=smoothing, schedule=schedule, **config)
    schedule = schedule.resolve(steps_per_epoch=32)
    n = len(ws) - 1
    rates = -np.diff(ws)
    values = ws[:-1]  # loss of step t
    if smoothing is not None:
        values = ss.finder.ema(values, smoothing)
    checks = np.arange(8, n + 1, 8)
    multipliers = torch_rates(values[checks - 1], **torch_kwargs(**config))
    in_force = np.ones(n)
    for step, m in zip(checks, multipliers, strict=True):
        in_force[step:] = m
    assert in_force.min() <= 0.25, "the run must include at least two reductions"
    resolution = 2 * np.spacing(np.float32(np.abs(ws).max()))  # w is float32
    np.testing.assert_allclose(rates, schedule.at(np.arange(n)) * in_force, rtol=1e-6,
                               atol=resolution)
    assert callback.multiplier == pytest.approx(in_force[-1])


@pytest.mark.parametrize("rate", ["schedule", "float"])
def test_per_batch_logger_logs_each_reduction_from_the_next_step(rate):
    """The logger (before the plateau callback) logs the rate each update used, across
    reductions: its host values follow the multiplier variable (a schedule) or the
    optimizer's rate variable (a float rate)."""

    class Logged(keras.callbacks.Callback):
        rates = []

        def on_train_batch_end(self, batch, logs=None):
            self.rates.append(logs["learning_rate"])

    Logged.rates = []
    model = probe_model(SCHEDULE if rate == "schedule" else 0.05)
    callback = ReduceLROnPlateau(monitor="loss", every=8, mode="max", patience=1, cooldown=1,
                                 factor=0.5)
    recorder = WeightRecorder()
    x, y = probe_data(32)
    model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0,
              callbacks=[ss.callbacks.LearningRateLogger(), callback, Logged(), recorder])
    rates = recorder.rates()
    assert callback.multiplier <= 0.25, "the run must include at least two reductions"
    resolution = 2 * np.spacing(np.float32(np.abs(np.asarray(recorder.ws)).max()))
    np.testing.assert_allclose(Logged.rates, rates, rtol=1e-6, atol=resolution)


@pytest.mark.skipif(BACKEND == "torch", reason="torch runs one step per execution")
def test_probe_exact_at_steps_per_execution_8():
    """With chunks of 8 the callback sees one mean per chunk; in mode "max" on a falling
    loss the decisions match step for step, so every chunk moves w by the same amount."""
    config = dict(mode="max", patience=1, cooldown=1, factor=0.5)
    ws1, _ = run_probe(1, every=8, **config)
    ws8, callback = run_probe(8, every=8, **config)
    np.testing.assert_allclose(ws8, ws1[::8], rtol=1e-6, atol=1e-6)
    assert callback.multiplier <= 0.25
    # and the reductions were applied in-graph: w moved less than the bare schedule
    n = len(ws1) - 1
    assert -ws8[-1] < 0.9 * SCHEDULE.at(np.arange(n)).sum()


def test_float_rate_stays_the_optimizer_variable():
    model = probe_model(0.5)
    model.optimizer.build(model.trainable_variables)
    variables = len(model.optimizer.variables)
    callback = ReduceLROnPlateau(monitor="loss", every=4, mode="max", patience=0, factor=0.1)
    recorder = WeightRecorder()
    x, y = probe_data(12)
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0,
              callbacks=[callback, recorder])
    assert isinstance(model.optimizer._learning_rate, keras.Variable)
    assert len(model.optimizer.variables) == variables
    # the check at step 4 sets best; the one at step 8 is worse -> reduction from step 8
    np.testing.assert_allclose(recorder.rates(), [0.5] * 8 + [0.05] * 4, atol=1e-6)


# ------------------------------------------------------------------ save and resume
def _rates_uninterrupted(every, epochs, config):
    ws, _ = run_probe(1, every=every, epochs=epochs, steps_per_epoch=16, **config)
    return -np.diff(ws)


RESUME_CONFIG = dict(mode="max", patience=1, factor=0.5)


def test_resume_with_save_and_load_model(tmp_path):
    expected = _rates_uninterrupted(4, 4, RESUME_CONFIG)
    x, y = probe_data(16)
    model = probe_model(SCHEDULE)
    recorder = WeightRecorder()
    fit = dict(batch_size=2, shuffle=False, verbose=0)
    model.fit(x, y, epochs=2, callbacks=[ReduceLROnPlateau(every=4, **RESUME_CONFIG),
                                         recorder], **fit)
    path = str(tmp_path / "mid.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert int(keras.ops.convert_to_numpy(restored.optimizer.iterations)) == 32
    scaled = restored.optimizer._learning_rate
    assert isinstance(scaled, Scaled) and scaled.multiplier_value < 1.0
    recorder2 = WeightRecorder()
    restored.fit(x, y, epochs=4, initial_epoch=2,
                 callbacks=[ReduceLROnPlateau(every=4, **RESUME_CONFIG), recorder2], **fit)
    rates = np.concatenate([recorder.rates(), recorder2.rates()])
    assert weight(restored) == pytest.approx(-expected.sum(), rel=1e-6)
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


@pytest.mark.parametrize("order", ["backup-first", "plateau-first"])
def test_resume_with_backup_and_restore(tmp_path, order):
    expected = _rates_uninterrupted(4, 4, RESUME_CONFIG)
    x, y = probe_data(16)
    fit = dict(batch_size=2, epochs=4, shuffle=False, verbose=0)

    def callbacks(*extra):
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        plateau = ReduceLROnPlateau(every=4, **RESUME_CONFIG)
        first = [backup, plateau] if order == "backup-first" else [plateau, backup]
        return first + list(extra)

    model = probe_model(SCHEDULE)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, callbacks=callbacks(Interrupt(2)), **fit)
    resumed = probe_model(SCHEDULE)  # a fresh process would rebuild the same model
    recorder = WeightRecorder()
    resumed.fit(x, y, callbacks=callbacks(recorder), **fit)
    np.testing.assert_allclose(recorder.rates(), expected[32:], rtol=1e-6)
    assert weight(resumed) == pytest.approx(-expected.sum(), rel=1e-6)


@pytest.mark.parametrize("kwargs, name", [
    ({"state": [1, 2]}, "state"), ({"state": {"best": "x"}}, "best"), ({"state": "best"}, "state"),
    ({"state": {"patience": 1.0}}, "state keys"), ({"multiplier": 1e308}, "multiplier"),
    ({"multiplier": -1.0}, "multiplier"), ({"min_lr": -1.0}, "min_lr"),
])
def test_scaled_validates_its_arguments(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        Scaled(ss.Constant(0.1), **kwargs)


def test_scaled_serializes_with_its_state():
    s = Scaled(ss.Linear(1.0, 0.0, 10), multiplier=0.25, min_lr=0.01, state={"best": 2.0})
    config = keras.saving.serialize_keras_object(s)
    back = keras.saving.deserialize_keras_object(config)
    assert isinstance(back, Scaled) and back.multiplier_value == 0.25 and back.state == s.state
    np.testing.assert_allclose(back.at(range(12)), s.at(range(12)))
    np.testing.assert_allclose(s.at([0, 8, 10]), [0.25, max(0.25 * 0.2, 0.01), 0.0], rtol=1e-6)


# ------------------------------------------------------------------ weights files, both ways
def _adam_model(rate):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="mse")
    return model


def _opt_values(model):
    return [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


@pytest.mark.parametrize("rate", ["float", "schedule"])
def test_plateau_weights_load_into_a_plainly_compiled_model_and_back(tmp_path, rate, capsys):
    def make_rate():
        return 0.01 if rate == "float" else ss.Exponential(0.01, 0.9, every=4)

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    model = _adam_model(make_rate())
    path = str(tmp_path / "ckpt.weights.h5")
    plateau = ReduceLROnPlateau(monitor="loss", every=2, mode="max", patience=0, factor=0.5)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=[
        plateau, keras.callbacks.ModelCheckpoint(path, save_weights_only=True)])
    assert plateau.multiplier < 1.0 and plateau.reductions
    saved = _opt_values(model)
    # into a model compiled the usual way, not yet trained (the optimizer is built by load)
    plain = _adam_model(make_rate())
    plain.optimizer.build(plain.trainable_variables)
    plain.load_weights(path)
    assert "Skipping" not in capsys.readouterr().out
    loaded = _opt_values(plain)
    assert int(keras.ops.convert_to_numpy(plain.optimizer.iterations)) == 16
    for a, b in zip(saved[2:], loaded[2:], strict=True):  # the moments
        np.testing.assert_array_equal(a, b)
    # and the other way: a plain run's weights into a model with the plateau callback
    plain.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    plain.save_weights(path)
    again = _adam_model(make_rate())
    callback = ReduceLROnPlateau(monitor="loss", every=2)
    callback.set_model(again)
    again.optimizer.build(again.trainable_variables)
    again.load_weights(path)
    assert int(keras.ops.convert_to_numpy(again.optimizer.iterations)) == 24
    for a, b in zip(_opt_values(plain)[2:], _opt_values(again)[2:], strict=True):
        np.testing.assert_array_equal(a, b)
    assert callback.multiplier == 1.0


def test_plateau_state_resumes_from_a_weights_file(tmp_path):
    keras.utils.set_random_seed(1)  # the same initial weights whatever ran before
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 3)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    model = _adam_model(0.01)
    # no check can improve by 1e9: reductions follow from patience alone, whatever the losses
    never = dict(monitor="loss", every=2, patience=1, factor=0.5, min_delta=1e9,
                 threshold_mode="abs")
    first = ReduceLROnPlateau(**never)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[first])
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    resumed = _adam_model(0.01)
    second = ReduceLROnPlateau(**never)
    second.set_model(resumed)
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.load_weights(path)
    assert second.multiplier == first.multiplier < 1.0
    assert second.plateau.values == first.plateau.values
    assert float(keras.ops.convert_to_numpy(resumed.optimizer.learning_rate)) == \
        pytest.approx(0.01 * first.multiplier)


def test_second_plateau_callback_applies_its_own_min_lr():
    model = probe_model(ss.Constant(1.0))
    x, y = probe_data(8)
    fit = dict(batch_size=2, epochs=1, shuffle=False, verbose=0)
    model.fit(x, y, callbacks=[ReduceLROnPlateau(every=1, mode="max", patience=0,
                                                 factor=0.1, min_lr=0.0)], **fit)
    recorder = WeightRecorder()
    second = ReduceLROnPlateau(every=1, mode="max", patience=0, factor=0.1, min_lr=0.05)
    model.fit(x, y, callbacks=[second, recorder], **fit)
    assert recorder.rates().min() == pytest.approx(0.05, rel=1e-6)
    assert model.optimizer._learning_rate.get_config()["min_lr"] == 0.05


def test_two_plateau_callbacks_on_one_optimizer_are_refused():
    model = probe_model(0.1)
    x, y = probe_data(4)
    with pytest.raises(ValueError, match="two stepsched ReduceLROnPlateau"):
        model.fit(x, y, batch_size=2, verbose=0, callbacks=[
            ReduceLROnPlateau(monitor="loss", every=2), ReduceLROnPlateau(monitor="loss")])


def test_a_logger_after_the_plateau_callback_warns():
    model = probe_model(SCHEDULE)
    x, y = probe_data(4)
    plateau = ReduceLROnPlateau(monitor="loss", every=2)
    with pytest.warns(UserWarning, match="placed after stepsched's ReduceLROnPlateau"):
        model.fit(x, y, batch_size=2, epochs=1, verbose=0,
                  callbacks=[plateau, ss.callbacks.LearningRateLogger()])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*placed after.*")
        model.fit(x, y, batch_size=2, epochs=1, verbose=0,
                  callbacks=[ss.callbacks.LearningRateLogger(), plateau])


def test_a_batch_level_backup_before_the_plateau_callback_warns(tmp_path):
    model = probe_model(0.1)
    x, y = probe_data(4)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "b"), save_freq=2)
    with pytest.warns(UserWarning, match="put ReduceLROnPlateau first"):
        model.fit(x, y, batch_size=2, verbose=0,
                  callbacks=[backup, ReduceLROnPlateau(monitor="loss", every=2)])


def test_a_reduction_reaches_a_finite_schedule_on_every_backend():
    """The multiplier is read at every step (no table of values made before a reduction)."""
    scaled = Scaled(ss.Linear(1.0, 0.0, 100))
    before = float(keras.ops.convert_to_numpy(scaled(keras.ops.convert_to_tensor(5, "int32"))))
    scaled.multiplier.assign(0.5)
    after = float(keras.ops.convert_to_numpy(scaled(keras.ops.convert_to_tensor(5, "int32"))))
    assert before == pytest.approx(0.95) and after == pytest.approx(0.475)
    assert float(scaled.at(5)) == pytest.approx(0.475)


def test_with_schedule_and_resolve_share_the_state_without_building_another(monkeypatch):
    """A copy over another schedule (``with_schedule``, ``resolve``) shares the multiplier
    and the bookkeeping; no state object (a Metric and a Variable) is made for it."""
    from stepsched.callbacks import plateau

    scaled = Scaled(ss.Linear(1.0, 0.0, ss.epochs(2)), multiplier=0.5)
    made = []
    real = plateau.PlateauState.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(plateau.PlateauState, "__init__", counting)
    copies = [scaled.with_schedule(ss.Constant(0.25)), scaled.with_schedule(ss.Constant(1.0), 0.1),
              scaled.resolve(steps_per_epoch=10)]
    assert made == []
    assert all(c.plateau is scaled.plateau for c in copies)
    assert copies[1].arg("min_lr") == 0.1 and float(copies[0].at(0)) == 0.125
    assert float(copies[2].at(10)) == 0.25


@pytest.mark.skipif(BACKEND != "torch", reason="torch's tables")
@pytest.mark.parametrize("inner", [ss.WarmupCosine(1e-3, 100, 1000),
                                   ss.Warmup(10) >> ss.Exponential(1e-3, 0.99),
                                   ss.OneCycle(1e-2, 500)], ids=repr)
@pytest.mark.parametrize("min_lr", [0.0, 1e-5])
def test_scaled_on_torch_reads_the_inner_table_and_is_bit_equal_to_at(inner, min_lr):
    """On torch ``Scaled`` (plateau reduction) takes its schedule's value from the
    schedule's float64 table and scales it on the device: bit-equal to ``at()``, before
    and after the multiplier changes, past the table's end included."""
    from stepsched.schedules import _torch_tables

    s = Scaled(inner, multiplier=1.0, min_lr=min_lr)
    steps = np.arange(1200)
    for m in (1.0, 0.3, 0.01):
        s.plateau.set(m)
        step = torch.tensor(7)
        assert _torch_tables.tabulated(s, step) is not None
        got = np.array([s(torch.tensor(i)).item() for i in steps], np.float32)
        np.testing.assert_array_equal(got, s.at(steps))
