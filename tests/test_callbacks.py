"""Callbacks: rate logging, fit-time resolution of durations, per-batch Python schedules.

Applied rates are read back with the one-hot exact probe of
``tests/test_exactness.py`` (``-w[k]`` is the rate applied at step ``k``).
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.conftest import BACKEND
from tests.test_exactness import RTOL, applied, fit, needs_spe, onehot_data, onehot_model

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "per-batch.md"


class BatchLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(logs.get("learning_rate"))


# ===================================================================== LearningRateLogger
@pytest.mark.backend_independent
def test_logger_rejects_bad_every():
    with pytest.raises(ValueError, match="every must be one of 'batch', 'epoch'; got 'step'"):
        ss.callbacks.LearningRateLogger(every="step")


@pytest.mark.backend_independent
def test_logger_every_epoch_adds_no_batch_hook():
    from keras.src import utils

    epoch = ss.callbacks.LearningRateLogger(every="epoch")
    batch = ss.callbacks.LearningRateLogger(every="batch")
    assert utils.is_default(epoch.on_train_batch_end)
    assert not utils.is_default(batch.on_train_batch_end)
    # Either way Keras keeps its callback dispatch (asynchronous where the backend is
    # thread-safe) as for a callback with no batch hook at all; a plain batch hook turns
    # it off.
    plain = keras.callbacks.CallbackList([keras.callbacks.Callback()])._async_train
    assert keras.callbacks.CallbackList([epoch])._async_train == plain
    assert keras.callbacks.CallbackList([batch])._async_train == plain
    assert not keras.callbacks.CallbackList([batch, BatchLogs()])._async_train


@pytest.mark.parametrize("rate", ["float", "keras_schedule", "stepsched"])
def test_logger_reports_rate_of_the_update_just_made(rate):
    n = 6
    lr = {
        "float": 0.125,
        "keras_schedule": keras.optimizers.schedules.ExponentialDecay(0.2, 1, 0.5),
        "stepsched": ss.Linear(0.3, 0.1, n),
    }[rate]
    model = onehot_model(lr, n)
    recorder = BatchLogs()
    history = fit(model, *onehot_data(n),
                  callbacks=[ss.callbacks.LearningRateLogger(), recorder])
    rates = applied(model)
    np.testing.assert_allclose(recorder.rates, rates, rtol=RTOL)
    np.testing.assert_allclose(history.history["learning_rate"], rates[-1:], rtol=RTOL)
    if rate == "keras_schedule":
        np.testing.assert_allclose(rates, 0.2 * 0.5 ** np.arange(n), rtol=RTOL)


@pytest.mark.parametrize("rate", ["float", "keras_schedule", "stepsched"])
def test_logger_is_exact_under_keras_asynchronous_dispatch(rate):
    """Alone (with History and async-safe callbacks) the logger keeps Keras's asynchronous
    dispatch: its batch hooks run on Keras's worker threads, in any order."""
    import threading

    n, epochs = 6, 3
    lr = {
        "float": 0.125,
        "keras_schedule": keras.optimizers.schedules.ExponentialDecay(0.2, 1, 0.5),
        "stepsched": ss.Linear(0.3, 0.1, n * epochs),
    }[rate]

    class AsyncLogs(keras.callbacks.Callback):
        async_safe = True

        def __init__(self):
            super().__init__()
            self.rows, self.threads = [], set()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self.threads.add(threading.current_thread() is threading.main_thread())
            self.rows.append((self.epoch, batch, logs["learning_rate"]))

    seen = AsyncLogs()
    fit(onehot_model(lr, n), *onehot_data(n), epochs=epochs,
        callbacks=[ss.callbacks.LearningRateLogger(), seen])
    plain = keras.callbacks.CallbackList([keras.callbacks.Callback()])._async_train
    assert keras.callbacks.CallbackList([ss.callbacks.LearningRateLogger(), seen]
                                        )._async_train == plain
    if plain:
        assert False in seen.threads  # hooks ran off the main thread
    logged = [r for _, _, r in sorted(seen.rows, key=lambda row: row[:2])]
    assert len(logged) == n * epochs
    expected = {"float": np.full(n * epochs, 0.125),
                "keras_schedule": 0.2 * 0.5 ** np.arange(n * epochs),
                "stepsched": np.asarray(ss.Linear(0.3, 0.1, n * epochs).at(range(n * epochs)))}
    np.testing.assert_allclose(logged, expected[rate], rtol=RTOL)


def test_logger_every_epoch_writes_epoch_logs_only():
    n = 4
    schedule = ss.Linear(0.3, 0.1, 2 * n)
    recorder = BatchLogs()
    history = fit(onehot_model(schedule, n), *onehot_data(n), epochs=2,
                  callbacks=[ss.callbacks.LearningRateLogger(every="epoch"), recorder])
    assert recorder.rates == [None] * (2 * n)
    np.testing.assert_allclose(history.history["learning_rate"],
                               schedule.at([n - 1, 2 * n - 1]), rtol=RTOL)


def test_logger_warns_when_placed_after_tensorboard(tmp_path):
    """The real ``TensorBoard`` (what it then writes: tests/test_tensorboard.py)."""
    n = 2
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb"))
    with pytest.warns(UserWarning, match="placed after keras.callbacks.TensorBoard"):
        fit(onehot_model(0.1, n), *onehot_data(n),
            callbacks=[board, ss.callbacks.LearningRateLogger()])
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb2"))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*placed after.*")
        fit(onehot_model(0.1, n), *onehot_data(n),
            callbacks=[ss.callbacks.LearningRateLogger(), board])


# ===================================================================== resolution at fit()
def test_fit_without_stepsched_callback_names_the_fix():
    n = 4
    model = onehot_model(ss.Linear(0.2, 0.02, ss.fraction(1.0)), n)
    with pytest.raises(ss.UnresolvedDurationError, match="add any stepsched callback"):
        fit(model, *onehot_data(n))
    # With a stepsched callback it trains (a new model: on JAX an exception inside
    # the traced step leaves the model's variables detached).
    model = onehot_model(ss.Linear(0.2, 0.02, ss.fraction(1.0)), n)
    fit(model, *onehot_data(n), callbacks=[ss.callbacks.LearningRateLogger(every="epoch")])
    np.testing.assert_allclose(applied(model), ss.Linear(0.2, 0.02, n).at(range(n)), rtol=RTOL)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("spe", [1, pytest.param(8, marks=needs_spe)])
def test_second_fit_after_a_finished_plan_starts_a_new_phase(spe, jit_compile):
    if BACKEND == "torch" and jit_compile:
        pytest.skip("jit_compile on torch is torch.compile, not part of the step semantics")
    n1, n2 = 10, 14
    x, y = onehot_data(n1 + n2)
    model = onehot_model(ss.Linear(0.2, 0.02, ss.fraction(1.0)), n1 + n2,
                         steps_per_execution=spe, jit_compile=jit_compile)
    logger = ss.callbacks.LearningRateLogger(every="epoch")
    fit(model, x[:n1], y[:n1], callbacks=[logger])
    with pytest.warns(UserWarning, match="on_change='restart'"):
        fit(model, x[n1:], y[n1:], callbacks=[logger])
    # the first plan had ended: the default policy ("auto") starts the schedule again
    # over the second fit's own length; the step keeps counting.
    expected = np.concatenate([ss.Linear(0.2, 0.02, n1).at(range(n1)),
                               ss.Linear(0.2, 0.02, n2).at(range(n2))])
    np.testing.assert_allclose(applied(model), expected, rtol=RTOL)


def test_epochs_resolve_from_steps_per_epoch():
    n, n_epochs = 4, 3
    schedule = ss.Warmup(ss.epochs(1), start=0.01) >> ss.Linear(0.2, 0.05, ss.epochs(1.5))
    model = onehot_model(schedule, n)
    history = fit(model, *onehot_data(n), epochs=n_epochs,
                  callbacks=[ss.callbacks.LearningRateLogger(every="epoch")])
    concrete = ss.Warmup(n, start=0.01) >> ss.Linear(0.2, 0.05, 1.5 * n)
    steps = np.arange(n * n_epochs)
    np.testing.assert_allclose(applied(model), concrete.at(steps).reshape(n_epochs, n).sum(0),
                               rtol=RTOL)
    np.testing.assert_allclose(history.history["learning_rate"],
                               concrete.at(n * np.arange(1, n_epochs + 1) - 1), rtol=RTOL)


# ===================================================================== BatchLearningRateScheduler
def _two(step, lr):
    return lr


def _two_with_default(step, lr=None):
    return 0.1


class _Callable:
    def __call__(self, step):
        return 0.1


ARITY = {
    "lambda step": (lambda step: 0.1, False),
    "lambda step, lr": (lambda step, lr: lr, True),
    "def step, lr=None": (_two_with_default, True),
    "*args": (lambda *args: 0.1, True),
    "partial": (functools.partial(lambda scale, step: scale, 0.1), False),
    "callable object": (_Callable(), False),
    "stepsched schedule": (ss.Constant(0.1), False),
    "keras schedule": (keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5), False),
}


@pytest.mark.parametrize("name", list(ARITY))
@pytest.mark.backend_independent
def test_scheduler_arity(name):
    fn, takes_rate = ARITY[name]
    assert ss.callbacks.BatchLearningRateScheduler(fn).takes_rate is takes_rate


@pytest.mark.parametrize("kwargs, error, message", [
    ({"schedule": 0.1}, TypeError, r"schedule must be a callable .* got 0.1 \(float\)"),
    ({"schedule": lambda: 0.1}, TypeError, "schedule must accept the step"),
    ({"schedule": lambda a, b, c: 0.1}, TypeError, "which requires 3 arguments"),
    ({"schedule": _two, "verbose": "yes"}, TypeError, "verbose must be an integer"),
    ({"schedule": _two, "verbose": -1}, ValueError, "verbose must be >= 0"),
    ({"schedule": _two, "allow_coarse": 1}, TypeError, "allow_coarse must be True or False"),
])
@pytest.mark.backend_independent
def test_scheduler_validates_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        ss.callbacks.BatchLearningRateScheduler(**kwargs)


def test_scheduler_applies_function_of_global_step_across_fits():
    n1, n2 = 5, 7
    x, y = onehot_data(n1 + n2)
    model = onehot_model(0.5, n1 + n2)
    seen = []

    def schedule(step, lr):
        seen.append((step, lr))
        return 0.1 * 0.8 ** step

    callback = ss.callbacks.BatchLearningRateScheduler(schedule)
    recorder = BatchLogs()
    fit(model, x[:n1], y[:n1], callbacks=[callback, recorder])
    history = fit(model, x[n1:], y[n1:], callbacks=[callback, recorder])
    expected = 0.1 * 0.8 ** np.arange(n1 + n2)
    np.testing.assert_allclose(applied(model), expected, rtol=RTOL)
    assert [s for s, _ in seen] == list(range(n1 + n2))  # global, not epoch-relative
    # lr is the rate currently set: the initial 0.5, then the previous step's value.
    np.testing.assert_allclose([lr for _, lr in seen], np.r_[0.5, expected[:-1]], rtol=RTOL)
    np.testing.assert_allclose(recorder.rates, expected, rtol=RTOL)
    np.testing.assert_allclose(history.history["learning_rate"], expected[-1:], rtol=RTOL)


@pytest.mark.parametrize("kind", ["stepsched", "keras"])
def test_scheduler_accepts_schedule_objects(kind):
    n = 6
    schedule = (ss.Linear(0.3, 0.05, n) if kind == "stepsched"
                else keras.optimizers.schedules.ExponentialDecay(0.3, 1, 0.5))
    model = onehot_model(0.9, n)
    fit(model, *onehot_data(n), callbacks=[ss.callbacks.BatchLearningRateScheduler(schedule)])
    expected = (schedule.at(range(n)) if kind == "stepsched"
                else 0.3 * 0.5 ** np.arange(n))
    np.testing.assert_allclose(applied(model), expected, rtol=RTOL)


def test_scheduler_refuses_an_optimizer_built_with_a_schedule():
    model = onehot_model(ss.Constant(0.1), 2)
    with pytest.raises(ValueError, match="needs an optimizer built with a float learning_rate"):
        fit(model, *onehot_data(2), callbacks=[ss.callbacks.BatchLearningRateScheduler(_two)])


def test_scheduler_rejects_non_finite_rate():
    model = onehot_model(0.1, 3)
    callback = ss.callbacks.BatchLearningRateScheduler(lambda step: math.inf if step == 1 else 0.1)
    with pytest.raises(ValueError, match=r"schedule\(1\) returned inf"):
        fit(model, *onehot_data(3), callbacks=[callback])


@needs_spe
def test_scheduler_steps_per_execution_needs_allow_coarse():
    n, spe = 12, 4
    fn = lambda step: 0.1 * 0.8 ** step  # noqa: E731
    model = onehot_model(0.5, n, steps_per_execution=spe)
    with pytest.raises(ValueError, match="pass a stepsched schedule as the optimizer's "
                                         "learning_rate"):
        fit(model, *onehot_data(n), callbacks=[ss.callbacks.BatchLearningRateScheduler(fn)])
    fit(model, *onehot_data(n),
        callbacks=[ss.callbacks.BatchLearningRateScheduler(fn, allow_coarse=True)])
    # One rate per chunk: the function is called at each chunk's first step only.
    chunk_start = np.arange(n) // spe * spe
    np.testing.assert_allclose(applied(model), 0.1 * 0.8 ** chunk_start, rtol=RTOL)


# ===================================================================== the guide runs
def guide_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_guide_code_runs():
    blocks = guide_blocks()
    assert len(blocks) >= 3
    namespace: dict = {"__name__": "guide"}
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), namespace)  # noqa: S102


class CachedOptimizerScheduler(keras.callbacks.Callback):
    """Sets the rate through an optimizer reference cached at train begin."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def on_train_begin(self, logs=None):
        self.optimizer = self.model.optimizer

    def on_train_batch_begin(self, batch, logs=None):
        self.optimizer.learning_rate.assign(self.fn(batch))


@pytest.mark.skipif(BACKEND != "jax", reason="only JAX keeps the training state outside "
                                              "the variables during an epoch")
def test_jax_rate_written_without_self_model_is_lost():
    n = 6
    fn = lambda step: 0.1 * 0.8 ** step  # noqa: E731
    model = onehot_model(0.5, n)
    fit(model, *onehot_data(n), callbacks=[CachedOptimizerScheduler(fn)])
    # Only the first write lands (the state is read from the variables once, before
    # the first step); later writes never reach the jitted state.
    np.testing.assert_allclose(applied(model), np.full(n, fn(0)), rtol=RTOL)
    model = onehot_model(0.5, n)
    fit(model, *onehot_data(n), callbacks=[ss.callbacks.BatchLearningRateScheduler(fn)])
    np.testing.assert_allclose(applied(model), fn(np.arange(n)), rtol=RTOL)


def test_scheduler_continues_after_save_and_load(tmp_path):
    n1, n2 = 4, 5
    fn = lambda step: 0.1 * 0.8 ** step  # noqa: E731
    x, y = onehot_data(n1 + n2)
    model = onehot_model(0.5, n1 + n2)
    fit(model, x[:n1], y[:n1], callbacks=[ss.callbacks.BatchLearningRateScheduler(fn)])
    model.save(tmp_path / "mid.keras")
    restored = keras.saving.load_model(tmp_path / "mid.keras")
    fit(restored, x[n1:], y[n1:], callbacks=[ss.callbacks.BatchLearningRateScheduler(fn)])
    np.testing.assert_allclose(applied(restored), fn(np.arange(n1 + n2)), rtol=RTOL)


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_scheduler_under_loss_scale_optimizer(mixed_float16, capsys):
    n = 5
    fn = lambda step: 0.25 if step < 2 else 0.125  # noqa: E731
    model = onehot_model(0.5, n)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    recorder = BatchLogs()
    fit(model, *onehot_data(n),
        callbacks=[ss.callbacks.BatchLearningRateScheduler(fn, verbose=1), recorder])
    expected = [fn(step) for step in range(n)]
    np.testing.assert_allclose(applied(model), expected, rtol=RTOL)
    np.testing.assert_allclose(recorder.rates, expected, rtol=RTOL)
    assert keras.backend.standardize_dtype(model.optimizer.learning_rate.dtype) == "float32"
    # verbose=1 reports each change of rate once.
    printed = re.findall(r"Step (\d+): BatchLearningRateScheduler setting learning rate to (\S+)\.",
                         capsys.readouterr().out)
    assert printed == [("0", "0.25"), ("2", "0.125")]
