"""Changing the length of training: every policy named, exact by the weight probe.

The probe is the one-hot model of tests/test_exactness.py with 8 rows, one epoch
of 8 steps at batch size 1: row ``k`` takes the rates of steps ``k, k + 8, ...``,
so the kernel holds the applied rates folded by epoch.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.test_exactness import RTOL, applied, onehot_data, onehot_model

SCHEDULE = ss.Warmup(ss.fraction(0.25)) >> ss.Linear(1.0, 0.1, ss.fraction(0.75))
SPE = 8
X, Y = onehot_data(SPE)


def folded(rates):
    return np.asarray(rates, np.float64).reshape(-1, SPE).sum(0)


def train(model, epochs, policy, initial_epoch=0, stop_after=None, expect_change=False):
    callbacks = [ss.callbacks.Plan(policy), ss.callbacks.LearningRateLogger()]
    if stop_after is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: setattr(model, "stop_training",
                                                     epoch + 1 == stop_after)))
    kwargs = dict(batch_size=1, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
                  verbose=0, callbacks=callbacks)
    if expect_change:
        with pytest.warns(UserWarning, match="plan of the learning-rate schedule changed"):
            model.fit(X, Y, **kwargs)
    else:
        model.fit(X, Y, **kwargs)


def plan(epochs):
    return SCHEDULE.resolve(steps_per_epoch=SPE, total_steps=SPE * epochs)


@pytest.mark.parametrize("initial_epoch", [0, 2])
def test_continue_stretches_the_rest_of_the_plan(initial_epoch):
    model = onehot_model(SCHEDULE, SPE)
    train(model, 4, "continue", stop_after=2)  # a 4-epoch plan, stopped after 2 epochs
    train(model, 6, "continue", initial_epoch=initial_epoch, expect_change=True)
    end = 16 + SPE * (6 - initial_epoch)
    first, ratio = plan(4), (32 - 16) / (end - 16)
    expected = np.concatenate([first.at(range(16)),
                               first.at(16 + (np.arange(16, end) - 16) * ratio)])
    np.testing.assert_allclose(applied(model), folded(expected), rtol=RTOL)
    rate = model.optimizer._learning_rate
    assert rate.at(15) == first.at(15) and rate.at(end - 1) == pytest.approx(
        first.at(32 - ratio), rel=1e-6)


@pytest.mark.parametrize("policy", ["auto", "continue", "restart", "keep"])
def test_policies_after_a_finished_plan_exact_and_across_save(policy, tmp_path):
    # fit(epochs=2), then fit(epochs=4) with no initial_epoch (4 more epochs)
    runs = []
    for saved in (False, True):
        model = onehot_model(SCHEDULE, SPE)
        train(model, 2, policy)
        if saved:
            model.save(tmp_path / "m.keras")
            model = keras.saving.load_model(tmp_path / "m.keras")
        train(model, 4, policy, expect_change=policy != "keep")
        runs.append(applied(model))
    first = plan(2)
    if policy in ("restart", "auto"):  # auto: the plan had ended, so a new phase
        expected = np.concatenate([first.at(range(16)), plan(4).at(range(32))])
    else:  # the plan had ended: continuing or keeping it holds its final value
        expected = first.at(range(48))
    np.testing.assert_allclose(runs[0], folded(expected), rtol=RTOL)
    np.testing.assert_array_equal(runs[1], runs[0])


def test_refuse_names_both_plans():
    model = onehot_model(SCHEDULE, SPE)
    train(model, 2, "refuse")
    with pytest.raises(ValueError, match="trained 16 steps on the plan for steps_per_epoch=8, end=16"):
        train(model, 4, "refuse")


def test_a_resumed_run_of_the_same_length_keeps_its_plan(tmp_path):
    whole = onehot_model(SCHEDULE, SPE)
    train(whole, 4, "refuse")
    model = onehot_model(SCHEDULE, SPE)
    train(model, 4, "refuse", stop_after=2)
    model.save(tmp_path / "m.keras")
    model = keras.saving.load_model(tmp_path / "m.keras")
    train(model, 4, "refuse", initial_epoch=2)
    np.testing.assert_allclose(applied(model), applied(whole), rtol=RTOL)
    np.testing.assert_allclose(applied(whole), folded(plan(4).at(range(32))), rtol=RTOL)


def test_more_training_leaves_a_plan_in_epochs_as_it_is():
    # a schedule in epochs does not depend on the run's length: a later fit() of the
    # same steps_per_epoch continues it on the global step, without a change of plan
    # (no warning, even under "refuse") and without rebuilding the train function
    in_epochs = ss.Warmup(ss.epochs(1)) >> ss.Linear(1.0, 0.1, ss.epochs(2))
    model = onehot_model(in_epochs, SPE)
    train(model, 2, "refuse")
    rate, step_fn = model.optimizer._learning_rate, model.train_function
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        train(model, 2, "refuse")
    assert model.optimizer._learning_rate is rate and model.train_function is step_fn
    concrete = in_epochs.resolve(steps_per_epoch=SPE)
    np.testing.assert_allclose(applied(model), folded(concrete.at(range(4 * SPE))), rtol=RTOL)


@pytest.mark.parametrize("policy", ["continue", "restart"])
def test_hyperparameter_schedules_follow_the_same_policy(policy):
    # the momentum of a stepsched optimizer is planned like the rate: a 4-epoch plan
    # stopped after 2 epochs, then fit(epochs=6) from initial_epoch 0
    momentum = ss.Linear(0.9, 0.5, ss.fraction(1.0))
    opt = ss.optimizers.SGD(SCHEDULE, momentum=momentum)
    model = onehot_model(SCHEDULE, SPE, optimizer=opt)
    train(model, 4, policy, stop_after=2)
    train(model, 6, policy, expect_change=True)
    rate, planned = model.optimizer._learning_rate, opt.hyperparameter_schedules["momentum"]
    assert (planned.arg("since"), planned.arg("policy")) == (rate.arg("since"), policy) == (
        16, policy)
    first = momentum.resolve(SPE, 32)
    steps = np.arange(16, 16 + 6 * SPE)
    if policy == "continue":
        later = first.at(16 + (steps - 16) * (32 - 16) / (6 * SPE))
    else:
        later = momentum.resolve(SPE, 6 * SPE).at(steps - 16)
    np.testing.assert_allclose(planned.at(steps), later, rtol=1e-6)
    np.testing.assert_array_equal(planned.at(range(16)), first.at(range(16)))


@pytest.mark.backend_independent
def test_plan_rejects_unknown_policies():
    with pytest.raises(ValueError, match="on_change"):
        ss.callbacks.Plan("stretch")


def test_the_guide_runs():
    """docs/guide/run-length.md: its code is the documentation of the policies."""
    import pathlib
    import re
    import warnings

    text = (pathlib.Path(__file__).parent.parent / "docs/guide/run-length.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for block in blocks:
            exec(compile(block, "run-length.md", "exec"), {"__name__": "guide"})  # noqa: S102
