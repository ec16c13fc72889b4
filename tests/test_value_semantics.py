"""Schedules are values: training never changes a schedule the user holds.

Each test here failed on the in-place resolution of 0.1 (``bind``), where a
shared piece was resolved for whichever model trained last.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.test_exactness import RTOL, applied, fit, onehot_data, onehot_model
from tests.test_exactness import _BatchLogs as _BatchRates


@pytest.mark.filterwarnings("ignore:the plan of the learning-rate schedule changed")
def test_one_schedule_in_three_models_fits_interleaved():
    base = ss.Warmup(ss.fraction(0.5)) >> ss.Constant(1.0)
    before = repr(base)
    # model -> (rate object, steps per fit); each fits twice, interleaved with the others
    plan = {"a": (base * 1.0, 10), "b": (base * 0.5, 30), "c": (base, 20)}
    models = {k: onehot_model(rate, 2 * n) for k, (rate, n) in plan.items()}
    logged = {k: [] for k in plan}
    for round_ in range(2):
        for key in ("a", "b", "c"):
            rate, n = plan[key]
            x, y = onehot_data(2 * n, round_ * n, (round_ + 1) * n)
            logger = _BatchRates()
            fit(models[key], x, y, callbacks=[ss.callbacks.LearningRateLogger(), logger])
            logged[key] += logger.rates
    assert repr(base) == before and base.is_symbolic
    for key, (rate, n) in plan.items():
        # each fit is n steps of one epoch; the second starts after the first plan ended,
        # so the default policy starts the schedule again (a new phase of n steps)
        once = rate.resolve(steps_per_epoch=n, total_steps=n).at(range(n))
        expected = np.concatenate([once, once])
        np.testing.assert_allclose(applied(models[key]), expected, rtol=RTOL)
        np.testing.assert_allclose(logged[key], expected, rtol=RTOL)
    # the warmups really differ: a ramps over 5 steps, b over 15
    assert applied(models["a"])[5] == pytest.approx(1.0)
    assert applied(models["b"])[5] == pytest.approx(0.5 * 5 / 15)


def test_the_optimizer_holds_its_own_plan_and_saves_it(tmp_path):
    schedule = ss.Linear(1.0, 0.0, ss.fraction(1.0))
    model = onehot_model(schedule, 8)
    x, y = onehot_data(8, 0, 4)
    fit(model, x, y, callbacks=[ss.callbacks.LearningRateLogger()])
    rate = model.optimizer._learning_rate
    assert isinstance(rate, ss.Planned) and rate.context == (4.0, 4.0)
    assert rate.arg("schedule") is schedule and schedule.is_symbolic
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    back = restored.optimizer._learning_rate
    assert isinstance(back, ss.Planned) and back.context == (4.0, 4.0)
    np.testing.assert_array_equal(back.at(range(8)), rate.at(range(8)))


@pytest.mark.parametrize("kind", ["generator", "dataset"])
def test_unknown_length_input_names_the_real_cause(kind):
    model = onehot_model(ss.Linear(1.0, 0.0, ss.fraction(1.0)), 4)
    x, y = onehot_data(4)
    if kind == "generator":
        def data():
            while True:
                yield x[:1], y[:1]
        source = data()
    else:
        tf = pytest.importorskip("tensorflow")
        source = tf.data.Dataset.from_tensor_slices((x, y)).batch(1).repeat().filter(
            lambda a, b: True)
    with pytest.raises(ss.UnresolvedDurationError, match="fit\\(\\) does not know how many steps"):
        model.fit(source, epochs=1, verbose=0, callbacks=[ss.callbacks.LearningRateLogger()])
    # the fix named in the message works
    model.fit(source, epochs=1, steps_per_epoch=4, verbose=0,
              callbacks=[ss.callbacks.LearningRateLogger()])
    assert applied(model).sum() == pytest.approx(1.0 + 0.75 + 0.5 + 0.25, rel=RTOL)


def test_a_schedule_longer_than_the_run_warns():
    model = onehot_model(ss.Warmup(10) >> ss.Cosine(0.1, 0.0, ss.fraction(1.0)), 8)
    with pytest.warns(UserWarning, match="lasts 18 steps but this fit\\(\\) runs 8"):
        fit(model, *onehot_data(8), callbacks=[ss.callbacks.LearningRateLogger()])
    model = onehot_model(ss.WarmupCosine(0.1, 2, ss.fraction(1.0)), 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit(model, *onehot_data(8), callbacks=[ss.callbacks.LearningRateLogger()])


@pytest.mark.parametrize("name", ["ReduceLROnPlateau", "LearningRateScheduler"])
def test_keras_rate_callbacks_on_a_schedule_fail_at_train_begin(name):
    model = onehot_model(ss.Exponential(0.1, 0.9), 4)
    keras_callback = (keras.callbacks.ReduceLROnPlateau() if name == "ReduceLROnPlateau"
                      else keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr))
    with pytest.raises(TypeError, match=f"keras.callbacks.{name}.*stepsched.callbacks"):
        fit(model, *onehot_data(4),
            callbacks=[ss.callbacks.LearningRateLogger(), keras_callback])
    assert applied(model).sum() == 0.0  # refused before the first step


@pytest.mark.backend_independent
def test_delay_then_warmup_chains_left_to_right():
    s = ss.Constant(0.0, 4) >> ss.Warmup(4) >> ss.Cosine(1.0, 0.0, 8)
    np.testing.assert_allclose(s.at([0, 3, 4, 6, 8, 12, 16]),
                               [0.0, 0.0, 0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-7)
    sgdr = ss.Warmup(2) >> ss.Cosine(1.0, 0.0, 4) >> ss.Warmup(2) >> ss.Cosine(0.5, 0.0, 4)
    assert float(sgdr.at(7)) == pytest.approx(0.25)
    incomplete = ss.Constant(0.0, 4) >> ss.Warmup(4)
    with pytest.raises(ValueError, match="ends with a Warmup"):
        incomplete.at(0)


def test_keras_rate_callbacks_with_a_float_rate_are_left_alone():
    model = onehot_model(0.1, 4)
    fit(model, *onehot_data(4), callbacks=[ss.callbacks.LearningRateLogger(),
                                           keras.callbacks.ReduceLROnPlateau()])
    np.testing.assert_allclose(applied(model), 0.1, rtol=RTOL)
