"""Cooldown on demand: the start is decided during training, exact by the weight probe.

The probe is the one-hot model of tests/test_exactness.py: ``-w[k]`` is the
rate applied at step ``k`` (summed over epochs when rows repeat).
"""

from __future__ import annotations

import os
import signal

import keras
import numpy as np
import pytest

import stepsched as ss
from stepsched.schedules.cooldown import Cooldown
from tests.conftest import BACKEND, graph_values
from tests.test_exactness import RTOL, applied, onehot_data, onehot_model

needs_spe = pytest.mark.skipif(BACKEND == "torch", reason="torch has no steps_per_execution > 1")

BASE = ss.Warmup(4, start=0.1) >> ss.Constant(1.0)
SHAPES = {"linear": ss.Linear, "cosine": ss.Cosine, "1-sqrt": ss.SqrtDecay}


def fit(model, n, epochs=1, callbacks=(), **kwargs):
    x, y = onehot_data(n)
    return model.fit(x, y, batch_size=1, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=list(callbacks), **kwargs)


class AtStep(keras.callbacks.Callback):
    """Calls ``action()`` at the first batch end where the optimizer step is >= ``step``."""

    def __init__(self, step, action):
        super().__init__()
        self.step, self.action, self.done = step, action, False

    def on_train_batch_end(self, batch, logs=None):
        if not self.done and int(keras.ops.convert_to_numpy(
                self.model.optimizer.iterations)) >= self.step:
            self.done = True
            self.action()


# --------------------------------------------------------------------- the schedule
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_formula_is_the_primitive_from_the_value_at_the_start(shape):
    c = Cooldown(BASE, 10, shape, end=0.05, start_step=2)  # started during the warmup
    t = np.arange(30)
    v0 = float(BASE.at(2))
    expected = np.where(t < 2, BASE.at(t), SHAPES[shape](v0, 0.05, 10).at(np.maximum(t - 2, 0)))
    np.testing.assert_allclose(c.at(t), expected, rtol=1e-6)
    assert Cooldown(BASE, 10, shape).at(1000) == BASE.at(1000)  # not started: the schedule


FAR = 2**24 + 2**22 + 3


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("start", [None, 9, FAR])
def test_in_graph_matches_numpy_also_past_2_24(shape, start):
    far_base = ss.Constant(0.25, 2**24 + 17.5) >> ss.Warmup(10) >> ss.Constant(1.0)
    c = Cooldown(far_base, 1000, shape, end=0.01, start_step=start)
    s = FAR if start is None else start
    steps = [0, 1, 8, 9, 10, 2**24 + 17, 2**24 + 18, 2**24 + 30] + [
        s + d for d in (-2, -1, 0, 1, 2, 7, 500, 999, 1000, 1001, 2**20)]
    expected = c.at(steps)
    for scalar in (False, True):
        np.testing.assert_allclose(graph_values(c, steps, scalar=scalar), expected, rtol=2e-6,
                                   atol=1e-7)


def test_start_is_read_live_by_the_same_function():
    """The start is a variable: on TF and torch one traced function sees it change."""
    c = Cooldown(ss.Constant(1.0), 4, "linear")
    if BACKEND == "jax":
        pytest.skip("on JAX a non-optimizer variable is a trace-time constant (retraced)")
    fn = c
    if BACKEND == "tensorflow":
        import tensorflow as tf

        fn = tf.function(c)
    assert float(fn(np.int64(6) if BACKEND == "tensorflow" else keras.ops.convert_to_tensor(6))) == 1.0
    c.state.set_start(4)
    step = np.int64(6) if BACKEND == "tensorflow" else keras.ops.convert_to_tensor(6)
    assert float(fn(step)) == pytest.approx(0.5)


def test_serialization_round_trip_keeps_the_start():
    c = Cooldown(ss.Warmup(ss.epochs(1)) >> ss.Constant(0.3), 7, "cosine", end=0.01,
                 start_step=12)
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(c))
    assert isinstance(back, Cooldown) and back.start_step == 12
    assert back.state is not c.state
    r1, r2 = c.resolve(steps_per_epoch=5), back.resolve(steps_per_epoch=5)
    np.testing.assert_array_equal(r1.at(range(40)), r2.at(range(40)))
    assert r1.state is c.state  # a resolved copy shares the start


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"schedule": "x", "duration": 3}, "schedule"), ({"schedule": 1.0, "duration": 0}, "duration"),
    ({"schedule": 1.0, "duration": 3, "shape": "exp"}, "shape"),
    ({"schedule": 1.0, "duration": 3, "start_step": -1}, "start_step"),
    ({"schedule": 1.0, "duration": 3, "start_step": 2**31}, "start_step"),
    ({"schedule": 1.0, "duration": 3, "end": float("nan")}, "end"),
])
@pytest.mark.backend_independent
def test_bad_schedule_arguments(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        Cooldown(**kwargs)


# --------------------------------------------------------------------- in training
def expected_rates(base, duration, shape, end, start, n):
    return Cooldown(base, duration, shape, end, start_step=start).at(range(n))


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("spe", [1, pytest.param(8, marks=needs_spe)])
def test_a_call_takes_effect_at_the_next_step(shape, spe):
    n = 40
    model = onehot_model(BASE, n, steps_per_execution=spe)
    cb = ss.callbacks.CooldownOnDemand(duration=12, shape=shape, end=0.02, stop=False)
    fit(model, n, callbacks=[cb, AtStep(10, cb.start_cooldown)])
    start = 10 if spe == 1 else 16  # the first hook at or after step 10 ends a chunk at 16
    assert cb.start_step == start
    np.testing.assert_allclose(applied(model), expected_rates(BASE, 12, shape, 0.02, start, n),
                               rtol=RTOL)
    assert BASE.at(39) == 1.0 and isinstance(BASE, ss.Sequence)  # the schedule is unchanged


@pytest.mark.parametrize("spe", [1, pytest.param(8, marks=needs_spe)])
def test_step_budget_is_exact_at_any_steps_per_execution_and_stops(spe):
    n = 64
    model = onehot_model(BASE, n, steps_per_execution=spe)
    cb = ss.callbacks.CooldownOnDemand(duration=10, budget_steps=37, shape="linear")
    fit(model, n, callbacks=[cb])
    assert cb.start_step == 27
    rates = applied(model)
    done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    assert done == (37 if spe == 1 else 40)  # stopped at the end of the chunk reaching 37
    expected = expected_rates(BASE, 10, "linear", 0.0, 27, n)
    expected[done:] = 0.0
    np.testing.assert_allclose(rates, expected, rtol=RTOL, atol=0)


def test_sample_budget_reads_the_batch_size_of_fit():
    n = 48
    x, y = onehot_data(n)
    x, y = np.repeat(x, 2, axis=0), np.repeat(y, 2, axis=0)  # batch of 2 repeats a row
    model = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=ss.samples(20), budget_samples=80,
                                       shape="cosine", stop=False)
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[cb])
    assert cb.cooldown.arg("duration") == 10 and cb.start_step == 30
    # loss = mean output over the batch: each step's rate lands on one row, twice halved
    np.testing.assert_allclose(applied(model), expected_rates(BASE, 10, "cosine", 0.0, 30, n),
                               rtol=RTOL)


def test_file_signal_wall_clock_and_plateau_triggers(tmp_path):
    n = 24
    path = tmp_path / "cooldown-now"
    # a file: created after step 7's hook, seen at the same hook by the callback after it
    model = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=6, file=path, stop=False)
    fit(model, n, callbacks=[AtStep(7, path.touch), cb])
    assert cb.start_step == 7
    np.testing.assert_allclose(applied(model), expected_rates(BASE, 6, "1-sqrt", 0.0, 7, n),
                               rtol=RTOL)
    # a signal sent to the running job
    model = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=6, signal=signal.SIGUSR1, stop=False)
    before = signal.getsignal(signal.SIGUSR1)
    fit(model, n, callbacks=[AtStep(5, lambda: os.kill(os.getpid(), signal.SIGUSR1)), cb])
    assert cb.start_step == 5 and signal.getsignal(signal.SIGUSR1) is before
    np.testing.assert_allclose(applied(model), expected_rates(BASE, 6, "1-sqrt", 0.0, 5, n),
                               rtol=RTOL)
    # a wall-clock budget already spent: the cooldown starts after the first step
    model = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=6, budget_seconds=1e-9, stop=False)
    fit(model, n, callbacks=[cb])
    assert cb.start_step == 1
    # a generous one: never
    model = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=6, budget_seconds=3600.0)
    fit(model, n, callbacks=[cb])
    assert cb.start_step is None
    # a plateau at epoch ends: the loss falls, so in mode="max" the second epoch does not
    # improve, and with patience=0 the cooldown starts at the next step (16)
    model = onehot_model(BASE, 8)
    cb = ss.callbacks.CooldownOnDemand(duration=8, monitor="loss", mode="max", patience=0,
                                       stop=False)
    fit(model, 8, epochs=4, callbacks=[cb])
    assert cb.start_step == 16
    folded = expected_rates(BASE, 8, "1-sqrt", 0.0, 16, 32).astype(np.float64)
    np.testing.assert_allclose(applied(model), folded.reshape(4, 8).sum(0), rtol=RTOL)


@pytest.mark.parametrize("spe", [1, pytest.param(8, marks=needs_spe)])
def test_kill_and_resume_during_the_cooldown_matches_an_uninterrupted_run(spe, tmp_path):
    """Train, trigger at step 12, BackupAndRestore after each epoch, die at the end of
    epoch 3 (mid-cooldown), resume in a fresh model: every applied rate as uninterrupted."""
    n, epochs = 8, 6
    start = 12 if spe == 1 else 16  # at spe=8 the first hook at or after step 12 is at 16
    lr = ss.Warmup(ss.epochs(1)) >> ss.Constant(0.5)

    def run(callbacks, trigger=True):
        model = onehot_model(lr, n, steps_per_execution=spe)
        cb = ss.callbacks.CooldownOnDemand(duration=20, shape="cosine", end=0.01, stop=False)
        extra = [AtStep(12, cb.start_cooldown)] if trigger else []
        try:
            fit(model, n, epochs=epochs, callbacks=[*callbacks, cb, *extra])
        except RuntimeError:
            pass
        return model, cb

    whole, cb_whole = run([])
    assert cb_whole.start_step == start
    expected = expected_rates(lr.resolve(steps_per_epoch=n), 20, "cosine", 0.01, start,
                              n * epochs)
    np.testing.assert_allclose(applied(whole), expected.astype(np.float64).reshape(-1, n).sum(0),
                               rtol=RTOL)

    class Die(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("killed")

    backup = str(tmp_path / "backup")
    run([keras.callbacks.BackupAndRestore(backup), Die()])
    resumed, cb = run([keras.callbacks.BackupAndRestore(backup)], trigger=False)
    assert cb.start_step == start  # from the backup, not from a trigger
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == n * epochs
    np.testing.assert_allclose(applied(resumed), applied(whole), rtol=RTOL)


def test_save_and_load_model_mid_cooldown(tmp_path):
    n = 8
    whole = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=12, shape="linear", stop=False)
    fit(whole, n, epochs=4, callbacks=[cb, AtStep(10, cb.start_cooldown)])

    model = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=12, shape="linear", stop=False)
    fit(model, n, epochs=2, callbacks=[cb, AtStep(10, cb.start_cooldown)])
    model.save(tmp_path / "m.keras")
    weights = tmp_path / "m.weights.h5"
    model.save_weights(weights)
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.optimizer._learning_rate.start_step == 10
    cb = ss.callbacks.CooldownOnDemand(duration=12, shape="linear", stop=False)
    fit(loaded, n, epochs=4, initial_epoch=2, callbacks=[cb])
    np.testing.assert_allclose(applied(loaded), applied(whole), rtol=RTOL)
    # the weights file holds the start too: a fresh model with the callback picks it up
    fresh = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=12, shape="linear", stop=False)
    cb.set_model(fresh)
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(weights)
    assert cb.start_step == 10
    fit(fresh, n, epochs=4, initial_epoch=2, callbacks=[cb])
    np.testing.assert_allclose(applied(fresh), applied(whole), rtol=RTOL)


def test_weights_of_a_cooldown_run_load_into_a_plain_model_and_back(tmp_path):
    n = 8
    model = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=5, at_step=3, stop=False)
    fit(model, n, callbacks=[cb])
    model.save_weights(tmp_path / "a.weights.h5")
    plain = onehot_model(BASE, n)
    plain.optimizer.build(plain.trainable_variables)
    plain.load_weights(tmp_path / "a.weights.h5")
    assert int(keras.ops.convert_to_numpy(plain.optimizer.iterations)) == n
    np.testing.assert_array_equal(applied(plain), applied(model))
    plain.save_weights(tmp_path / "b.weights.h5")
    again = onehot_model(BASE, n)
    cb = ss.callbacks.CooldownOnDemand(duration=5, stop=False)
    cb.set_model(again)
    again.optimizer.build(again.trainable_variables)
    again.load_weights(tmp_path / "b.weights.h5")  # no start in the file: none decided
    assert cb.start_step is None
    assert int(keras.ops.convert_to_numpy(again.optimizer.iterations)) == n


def test_with_plateau_reduction_the_cooldown_sits_inside_the_multiplier():
    n = 16
    model = onehot_model(BASE, n)
    cd = ss.callbacks.CooldownOnDemand(duration=6, at_step=5, shape="linear", stop=False)
    plateau = ss.callbacks.ReduceLROnPlateau(monitor="loss", every=4, mode="max", patience=0,
                                             factor=0.5)
    fit(model, n, callbacks=[cd, plateau])
    rate = model.optimizer._learning_rate
    assert isinstance(rate, ss.callbacks.Scaled) and isinstance(rate.arg("schedule"), Cooldown)
    assert plateau.reductions  # the loss falls: mode="max" reduces
    expected = expected_rates(BASE, 6, "linear", 0.0, 5, n).astype(np.float64)
    for step, m in [(0, 1.0), *plateau.reductions]:
        expected[step:] = expected_rates(BASE, 6, "linear", 0.0, 5, n)[step:] * np.float32(m)
    np.testing.assert_allclose(applied(model), expected, rtol=RTOL)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"duration": ss.fraction(0.2)}, "duration"), ({"duration": 5, "every": 3}, "every"),
    ({"duration": 5, "signal": signal.SIGKILL}, "signal"),
    ({"duration": 5, "signal": 10**6}, "signal"), ({"duration": 5, "file": 3}, "file"),
])
@pytest.mark.backend_independent
def test_bad_callback_arguments(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        ss.callbacks.CooldownOnDemand(**kwargs)


def test_a_keras_schedule_or_a_float_is_refused():
    model = onehot_model(0.1, 4)
    with pytest.raises(TypeError, match="stepsched schedule"):
        ss.callbacks.CooldownOnDemand(duration=3).set_model(model)


# --------------------------------------------------------------------- extend a run
FIRST = ss.WarmupCosine(1.0, warmup=ss.fraction(0.25), total=ss.fraction(1.0))


@pytest.mark.parametrize("spe", [1, pytest.param(8, marks=needs_spe)])
def test_extend_appends_a_new_phase_exactly_and_across_save(spe, tmp_path):
    """fit 2 epochs (the plan ends), append re-warm + decay to another peak, fit 2 more."""
    n = 8
    new_phase = ss.Warmup(4) >> ss.Cosine(0.4, 0.0, 12)
    runs = []
    for saved in (False, True):
        model = onehot_model(FIRST, n, steps_per_execution=spe)
        fit(model, n, epochs=2, callbacks=[ss.callbacks.Plan()])
        rate = ss.extend(model, new_phase)
        assert isinstance(rate, ss.Extended) and rate.arg("at") == 16
        fit(model, n, epochs=1, callbacks=[ss.callbacks.Plan()])
        if saved:
            model.save(tmp_path / "m.keras")
            model = keras.saving.load_model(tmp_path / "m.keras")
        fit(model, n, epochs=1, callbacks=[ss.callbacks.Plan()])
        runs.append(applied(model))
    expected = np.concatenate([FIRST.resolve(total_steps=16).at(range(16)),
                               new_phase.at(range(16))]).astype(np.float64)
    np.testing.assert_allclose(runs[0], expected.reshape(-1, n).sum(0), rtol=RTOL)
    np.testing.assert_array_equal(runs[1], runs[0])
    # Plan(on_change="restart") could only have started FIRST again (peak 1.0, not 0.4)
    assert float(new_phase.at(4)) == pytest.approx(0.4)


def test_a_second_cooldown_branched_from_a_stable_checkpoint(tmp_path):
    """Save at step 16 (stable); branch A cools down with the callback, branch B is loaded
    from the checkpoint and extended with the same cooldown: the same rates, and a third
    branch cools down later (a longer run) from the same checkpoint."""
    n = 8
    model = onehot_model(BASE, n)
    fit(model, n, epochs=2, callbacks=[ss.callbacks.CooldownOnDemand(duration=8)])
    model.save(tmp_path / "stable.keras")

    a = keras.saving.load_model(tmp_path / "stable.keras")
    cb = ss.callbacks.CooldownOnDemand(duration=8, shape="1-sqrt", stop=False)
    fit(a, n, epochs=1, callbacks=[cb, AtStep(0, cb.start_cooldown)])
    assert cb.start_step == 17  # the first hook after loading is at step 17
    b = keras.saving.load_model(tmp_path / "stable.keras")
    ss.extend(b, ss.SqrtDecay(1.0, 0.0, 8), at=17)
    fit(b, n, epochs=1)
    np.testing.assert_allclose(applied(b), applied(a), rtol=RTOL)
    rates = expected_rates(BASE, 8, "1-sqrt", 0.0, 17, 24).astype(np.float64)
    np.testing.assert_allclose(applied(b), rates.reshape(-1, n).sum(0), rtol=RTOL)


def test_extend_after_a_cooldown_then_cool_down_again():
    n = 8
    model = onehot_model(BASE, n)
    first = ss.callbacks.CooldownOnDemand(duration=4, at_step=4, shape="linear")
    fit(model, n, epochs=1, callbacks=[first])  # cools down over steps 4..8, stops at 8
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 8
    phase = ss.Warmup(4) >> ss.Constant(0.5)
    ss.extend(model, phase)
    second = ss.callbacks.CooldownOnDemand(duration=4, at_step=14, shape="cosine")
    fit(model, n, epochs=3, callbacks=[second])  # re-warm, stable, cool down 14..18, stop
    assert second.start_step == 14 and first.start_step == 4
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 18
    expected = np.concatenate([expected_rates(BASE, 4, "linear", 0.0, 4, 8),
                               expected_rates(phase, 4, "cosine", 0.0, 6, 10),
                               np.zeros(6)]).astype(np.float64)
    np.testing.assert_allclose(applied(model), expected.reshape(-1, n).sum(0), rtol=RTOL,
                               atol=1e-9)


def test_extended_in_graph_and_round_trip_also_past_2_24():
    at = 2**24 + 2**22 + 1
    e = ss.Extended(ss.Constant(0.3), ss.Warmup(10) >> ss.Cosine(1.0, 0.0, 100), at=at)
    steps = [0, 5, at - 1, at, at + 1, at + 5, at + 10, at + 60, at + 110, at + 10**6]
    for scalar in (False, True):
        np.testing.assert_allclose(graph_values(e, steps, scalar=scalar), e.at(steps),
                                   rtol=2e-6, atol=1e-7)
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(e))
    np.testing.assert_array_equal(back.at(steps), e.at(steps))
    assert e.duration == at + 110


def test_extend_refuses_the_past_and_a_float_rate():
    model = onehot_model(BASE, 4)
    fit(model, 4)
    with pytest.raises(ValueError, match="at=2 is before"):
        ss.extend(model, ss.Constant(0.1), at=2)
    with pytest.raises(TypeError, match="stepsched schedule"):
        ss.extend(onehot_model(0.1, 4), ss.Constant(0.1))


def test_with_schedule_and_resolve_share_the_start_without_building_another(monkeypatch):
    """A copy over another schedule (``with_schedule``, ``resolve``) shares the start; no
    state object (a Metric and a Variable) is made for it."""
    from stepsched.schedules import cooldown

    c = Cooldown(ss.Linear(1.0, 0.0, ss.epochs(2)), duration=4, shape="linear", start_step=6)
    made = []
    real = cooldown.CooldownState.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(cooldown.CooldownState, "__init__", counting)
    copies = [c.with_schedule(ss.Constant(1.0)), c.with_schedule(ss.Constant(1.0), 2),
              c.resolve(steps_per_epoch=10)]
    assert made == []
    assert all(k.state is c.state for k in copies)
    assert copies[0].at([5, 6, 8, 10]).tolist() == [1.0, 1.0, 0.5, 0.0]
    assert copies[1].arg("duration") == 2 and copies[2].start_step == 6
