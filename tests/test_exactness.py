"""The rate the optimizer applies at step k is exactly ``schedule.at(k)``.

The exact probe here is a one-hot variant of ``tests/probe.py``: a bias-free
``Dense(1)`` with an ``n``-vector kernel ``w`` (starting at 0), fed the one-hot
row ``e_k`` at step ``k`` (``shuffle=False``), with loss = the mean output.
The gradient is ``e_k``, so plain SGD does ``w[k] -= lr_k`` and leaves every
other entry alone: after training, ``-w[k]`` *is* the rate applied at step
``k``, for every step, whatever ``steps_per_execution`` hides from callbacks.
``0 - lr`` is exact in float32, so ``-w`` equals the float32 rate bit for bit;
the only tolerance needed is float32 rounding between the in-graph formula
(float32 on JAX, float64 then cast on TF/torch) and ``schedule.at`` (float64
then cast): one or two ulp, hence ``rtol=1e-6``.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.conftest import BACKEND
from tests.probe import mean_output

RTOL = 1e-6  # float32 rounding of the same formula on two evaluators (see module docstring)

# Non-trivial on purpose: a warmup from a non-zero start into a decay.
SCHEDULE = ss.Warmup(5, start=0.01) >> ss.Exponential(0.1, 0.9)

needs_spe = pytest.mark.skipif(BACKEND == "torch",
                               reason="torch has no steps_per_execution > 1")


def onehot_model(learning_rate, n: int, optimizer=None, **compile_kwargs) -> keras.Model:
    """The one-hot exact probe (see module docstring) with ``n`` kernel entries."""
    inputs = keras.Input((n,))
    outputs = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(learning_rate=learning_rate),
                  loss=mean_output, **compile_kwargs)
    return model


def onehot_data(n: int, start: int = 0, stop: int | None = None):
    """One-hot rows ``e_start .. e_{stop-1}`` of length ``n`` (one per step at batch_size=1)."""
    x = np.eye(n, dtype="float32")[start:stop]
    return x, x[:, :1]


def applied(model) -> np.ndarray:
    """Every applied rate, recovered from the kernel (float64)."""
    kernel = model.layers[-1].kernel
    return -keras.ops.convert_to_numpy(kernel)[:, 0].astype(np.float64)


def fit(model, x, y, **kwargs):
    kwargs.setdefault("epochs", 1)
    return model.fit(x, y, batch_size=1, shuffle=False, verbose=0, **kwargs)


class FolkScheduler(keras.callbacks.Callback):
    """The usual advice: set the rate from the batch index in ``on_batch_end``."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def on_train_begin(self, logs=None):
        self.model.optimizer.learning_rate.assign(self.fn(0))

    def on_batch_end(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.fn(batch + 1))


# --------------------------------------------------------------------- steps_per_execution
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("spe", [1, pytest.param(8, marks=needs_spe)])
def test_every_step_exact(spe, jit_compile):
    if BACKEND == "torch" and jit_compile:
        pytest.skip("jit_compile on torch is torch.compile, not part of the step semantics")
    n = 21  # chunks of 8, 8, 5 at spe=8: the last chunk is partial
    model = onehot_model(SCHEDULE, n, steps_per_execution=spe, jit_compile=jit_compile)
    fit(model, *onehot_data(n))
    np.testing.assert_allclose(applied(model), SCHEDULE.at(range(n)), rtol=RTOL)


@needs_spe
def test_folk_callback_is_wrong_at_steps_per_execution_8():
    n = 24
    fn = lambda step: float(SCHEDULE.at(step))  # noqa: E731
    # Control: at steps_per_execution=1 the folk callback does apply the schedule ...
    model = onehot_model(0.5, n)
    fit(model, *onehot_data(n), callbacks=[FolkScheduler(fn)])
    np.testing.assert_allclose(applied(model), SCHEDULE.at(range(n)), rtol=RTOL)
    # ... at steps_per_execution=8 its hook runs once per chunk of 8 steps, so
    # every step of a chunk reuses the rate set after the previous chunk.
    model = onehot_model(0.5, n, steps_per_execution=8)
    fit(model, *onehot_data(n), callbacks=[FolkScheduler(fn)])
    rates = applied(model)
    chunk_start = (np.arange(n) // 8) * 8
    np.testing.assert_allclose(rates, SCHEDULE.at(chunk_start), rtol=RTOL)
    wrong = ~np.isclose(rates, SCHEDULE.at(range(n)), rtol=1e-3)
    assert wrong.sum() == n - 3  # all but the first step of each chunk
    # The in-graph schedule on the same model is exact.
    model = onehot_model(SCHEDULE, n, steps_per_execution=8)
    fit(model, *onehot_data(n))
    np.testing.assert_allclose(applied(model), SCHEDULE.at(range(n)), rtol=RTOL)


# --------------------------------------------------------------------- continuing training
def test_two_consecutive_fits_continue_the_step():
    n1, n2 = 7, 9
    model = onehot_model(SCHEDULE, n1 + n2)
    x, y = onehot_data(n1 + n2)
    fit(model, x[:n1], y[:n1])
    fit(model, x[n1:], y[n1:])
    np.testing.assert_allclose(applied(model), SCHEDULE.at(range(n1 + n2)), rtol=RTOL)


def test_save_load_mid_training_matches_uninterrupted_run(tmp_path):
    n1, n2 = 6, 8
    x, y = onehot_data(n1 + n2)
    whole = onehot_model(SCHEDULE, n1 + n2)
    fit(whole, x, y)

    model = onehot_model(SCHEDULE, n1 + n2)
    fit(model, x[:n1], y[:n1])
    path = tmp_path / "mid.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert int(keras.ops.convert_to_numpy(restored.optimizer.iterations)) == n1
    fit(restored, x[n1:], y[n1:])
    np.testing.assert_array_equal(applied(restored), applied(whole))
    np.testing.assert_allclose(applied(restored), SCHEDULE.at(range(n1 + n2)), rtol=RTOL)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, after_epoch: int):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after_epoch:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resume_matches_uninterrupted_run(tmp_path):
    n, n_epochs = 5, 4
    x, y = onehot_data(n)
    # Each epoch revisits the same rows, so w[k] sums the rates of steps k, k+n, k+2n, ...
    expected = SCHEDULE.at(range(n * n_epochs)).astype(np.float64).reshape(n_epochs, n).sum(0)

    whole = onehot_model(SCHEDULE, n)
    fit(whole, x, y, epochs=n_epochs)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = onehot_model(SCHEDULE, n)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(model, x, y, epochs=n_epochs, callbacks=[backup, _Interrupt(after_epoch=1)])
    resumed = onehot_model(SCHEDULE, n)  # a fresh process would rebuild the model
    logger = ss.callbacks.LearningRateLogger(every="epoch")
    history = fit(resumed, x, y, epochs=n_epochs, callbacks=[backup, logger])
    assert len(history.history["loss"]) == n_epochs - 2  # really resumed at epoch 2
    np.testing.assert_array_equal(applied(resumed), applied(whole))
    np.testing.assert_allclose(applied(resumed), expected, rtol=RTOL)
    np.testing.assert_allclose(history.history["learning_rate"],
                               SCHEDULE.at([3 * n - 1, 4 * n - 1]), rtol=RTOL)


# --------------------------------------------------------------------- mixed precision
@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_mixed_precision_rate_stays_float32(policy):
    n = 12
    model = onehot_model(SCHEDULE, n)
    optimizer = model.optimizer
    if policy == "mixed_float16":
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.layers[-1].compute_dtype == policy.removeprefix("mixed_")
    assert keras.backend.standardize_dtype(model.layers[-1].kernel.dtype) == "float32"
    recorder = _BatchLogs()
    fit(model, *onehot_data(n), callbacks=[ss.callbacks.LearningRateLogger(), recorder])
    assert keras.backend.standardize_dtype(optimizer.learning_rate.dtype) == "float32"
    np.testing.assert_allclose(applied(model), SCHEDULE.at(range(n)), rtol=RTOL)
    np.testing.assert_allclose(recorder.rates, SCHEDULE.at(range(n)), rtol=RTOL)


# --------------------------------------------------------------------- logged column
class _BatchLogs(keras.callbacks.Callback):
    """Collects ``logs["learning_rate"]`` at every batch end, as TensorBoard sees it."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(logs["learning_rate"])


@pytest.mark.parametrize("spe", [1, pytest.param(8, marks=needs_spe)])
def test_logged_learning_rate_equals_applied_rates(spe, tmp_path):
    n, n_epochs = 10, 2
    schedule = ss.Linear(0.2, 0.02, 2 * n)
    x, y = onehot_data(n)
    recorder = _BatchLogs()
    csv = tmp_path / "log.csv"
    model = onehot_model(schedule, n, steps_per_execution=spe)
    history = fit(model, x, y, epochs=n_epochs,
                  callbacks=[ss.callbacks.LearningRateLogger(), recorder,
                             keras.callbacks.CSVLogger(str(csv))])
    steps = np.arange(n * n_epochs)
    # The kernel sums both epochs' rates: step k and k + n hit row k.
    np.testing.assert_allclose(applied(model), schedule.at(steps).reshape(2, n).sum(0),
                               rtol=RTOL)
    # Batch hooks run at chunk ends (epoch-relative, the last chunk may be partial).
    chunk_ends = np.concatenate([e * n + np.minimum(np.arange(spe, n + spe, spe), n) - 1
                                 for e in range(n_epochs)])
    np.testing.assert_allclose(recorder.rates, schedule.at(chunk_ends), rtol=RTOL)
    epoch_ends = schedule.at([n - 1, 2 * n - 1])
    np.testing.assert_allclose(history.history["learning_rate"], epoch_ends, rtol=RTOL)
    rows = np.genfromtxt(csv, delimiter=",", names=True)
    np.testing.assert_allclose(rows["learning_rate"], epoch_ends, rtol=RTOL)


# --------------------------------------------------------------------- gradient accumulation
@pytest.mark.parametrize("reading", ["micro_batches", "per_update"])
def test_gradient_accumulation(reading):
    k, n = 4, 16  # k a power of two: the averaged gradient 1/k is exact in float32
    base = ss.Linear(0.4, 0.04, 3)
    schedule = base if reading == "micro_batches" else base.per_update(k)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, gradient_accumulation_steps=k)
    model = onehot_model(None, n, optimizer=optimizer)
    fit(model, *onehot_data(n))
    update = np.arange(n) // k  # the update that row j's gradient contributes to
    if reading == "micro_batches":
        # Keras hands the schedule its micro-batch counter: update u runs at (u + 1) k - 1.
        rate = base.at((update + 1) * k - 1)
    else:
        rate = base.at(update)
    # The update applies the mean of k one-hot gradients: each row moves by lr / k.
    np.testing.assert_allclose(applied(model) * k, rate, rtol=RTOL)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == n // k
