"""Keras's real ``TensorBoard`` callback with ``LearningRateLogger``, read back with
TensorBoard's own event reader.

What Keras 3.15's ``TensorBoard(update_freq=N)`` writes, and so what is checked:

- ``batch_<key>`` for every key in the batch logs, at the step ``b`` = its own
  count of batch-hook calls since ``fit()`` began (1-based, across epochs), kept
  when ``b % N == 0``. With ``steps_per_execution=k`` the hooks run once per
  chunk of up to ``k`` steps (an epoch's last chunk may be shorter), so ``b``
  counts chunks, not optimizer steps; the logger's value there is the rate of
  the chunk's last step. ``b`` restarts at 1 in every ``fit()``.
- ``epoch_learning_rate`` at step ``epoch``: TensorBoard overwrites the
  logger's value with the optimizer's current rate, the rate of the *next*
  step, ``schedule.at(iterations)``.

Keras's ``TensorBoard`` writes through ``tf.summary`` on every backend, so
TensorFlow and the ``tensorboard`` package must be installed (both are in the
``test`` extra).
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.conftest import BACKEND
from tests.test_exactness import RTOL, applied, fit, onehot_data, onehot_model

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the tensorboard package is a test dependency (pip install -e '.[test]')")

SCHEDULE = ss.Warmup(6, start=0.01) >> ss.Cosine(0.1, 0.001, 30)


def read_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar TensorBoard wrote under ``run_dir``: tag -> {step: value}.

    ``size_guidance=0`` keeps every event (the default samples 10 per tag).
    """
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0,
                                     event_accumulator.SCALARS: 0})
    acc.Reload()
    from tensorboard.util import tensor_util

    out: dict[str, dict[int, float]] = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue  # the model's config (a text summary) and graphs
        events = acc.Tensors(tag)
        out[tag] = {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in events}
        assert len(out[tag]) == len(events), f"{tag}: a step written twice"
    return out


def chunks(steps_per_epoch: int, epochs: int, spe: int) -> list[tuple[int, int]]:
    """(0-based optimizer step that ends it, its length) for each batch-hook call, in order."""
    out = []
    for e in range(epochs):
        for c in range(math.ceil(steps_per_epoch / spe)):
            length = min(spe, steps_per_epoch - c * spe)
            out.append((e * steps_per_epoch + c * spe + length - 1, length))
    return out


class StepsAtBatchEnd(keras.callbacks.Callback):
    """The optimizer's ``iterations`` at every batch-hook call (a host read per call)."""

    def __init__(self):
        super().__init__()
        self.iterations = []

    def on_train_batch_end(self, batch, logs=None):
        self.iterations.append(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))


STEPS_PER_EPOCH, EPOCHS = 10, 2  # 10 is not a multiple of 4: each epoch ends on a short chunk


def run_with_tensorboard(log_dir: Path, spe: int, update_freq: int):
    """Train the one-hot probe with the logger before TensorBoard; return what was written."""
    x, y = onehot_data(STEPS_PER_EPOCH)
    model = onehot_model(SCHEDULE, STEPS_PER_EPOCH, steps_per_execution=spe)
    seen = StepsAtBatchEnd()
    fit(model, x, y, epochs=EPOCHS, callbacks=[
        ss.callbacks.LearningRateLogger(),
        keras.callbacks.TensorBoard(log_dir=str(log_dir), update_freq=update_freq), seen])
    # the one-hot probe: row k is seen at steps k and 10 + k
    n = STEPS_PER_EPOCH * EPOCHS
    np.testing.assert_allclose(applied(model), SCHEDULE.at(range(10)) + SCHEDULE.at(range(10, n)),
                               rtol=RTOL)
    calls = chunks(STEPS_PER_EPOCH, EPOCHS, spe)
    assert [i - 1 for i in seen.iterations] == [end for end, _ in calls]  # one call per chunk
    return calls, read_scalars(log_dir / "train")


SPE = [1, pytest.param(4, marks=pytest.mark.skipif(BACKEND == "torch",
                                                   reason="torch has no steps_per_execution > 1"))]


@pytest.mark.parametrize("update_freq", [1, 2, 3])
@pytest.mark.parametrize("spe", SPE)
def test_batch_learning_rate_in_the_event_files_is_the_applied_rate(tmp_path, spe, update_freq):
    calls, scalars = run_with_tensorboard(tmp_path, spe, update_freq)
    logged = scalars["batch_learning_rate"]
    # TensorBoard's step for a batch is its count of batch-hook calls (1-based)
    expected = {b: calls[b - 1] for b in range(1, len(calls) + 1) if b % update_freq == 0}
    assert sorted(logged) == sorted(expected)
    full = [b for b in sorted(expected) if expected[b][1] == spe]  # short chunks: see below
    np.testing.assert_allclose([logged[b] for b in full],
                               SCHEDULE.at([expected[b][0] for b in full]), rtol=RTOL)

    # At epoch ends TensorBoard writes the optimizer's current rate, the next step's, at
    # step = epoch; but Keras writes epoch summaries inside the last batch's record_if, so an
    # epoch whose batch-hook count is not a multiple of update_freq gets none
    # (tensorflow/tensorboard#4975).
    last_call = [sum(1 for end, _ in calls if end < (e + 1) * STEPS_PER_EPOCH)
                 for e in range(EPOCHS)]
    written = [e for e in range(EPOCHS) if last_call[e] % update_freq == 0]
    epoch_lr = scalars.get("epoch_learning_rate", {})
    assert sorted(epoch_lr) == written
    np.testing.assert_allclose([epoch_lr[e] for e in written],
                               SCHEDULE.at([(e + 1) * STEPS_PER_EPOCH for e in written]),
                               rtol=RTOL)


@pytest.mark.skipif(BACKEND == "torch", reason="torch has no steps_per_execution > 1")
def test_short_last_chunk_logs_the_rate_of_its_own_last_step(tmp_path):
    """Keras reports an epoch's short last chunk with a full chunk's end index (11 for a
    chunk ending at step 9); the logger must still report the rate of step 9."""
    calls, scalars = run_with_tensorboard(tmp_path, 4, 1)
    logged = scalars["batch_learning_rate"]
    short = [b for b in range(1, len(calls) + 1) if calls[b - 1][1] < 4]
    assert short
    np.testing.assert_allclose([logged[b] for b in short],
                               SCHEDULE.at([calls[b - 1][0] for b in short]), rtol=RTOL)


def test_second_fit_restarts_tensorboards_batch_axis(tmp_path):
    """TensorBoard's batch axis is its own per-fit count; the logged rate follows the
    optimizer's global step."""
    n1, n2 = 6, 8
    x, y = onehot_data(n1 + n2)
    model = onehot_model(SCHEDULE, n1 + n2)
    logger = ss.callbacks.LearningRateLogger()
    fit(model, x[:n1], y[:n1],
        callbacks=[logger, keras.callbacks.TensorBoard(str(tmp_path / "a"), update_freq=1)])
    fit(model, x[n1:], y[n1:],
        callbacks=[logger, keras.callbacks.TensorBoard(str(tmp_path / "b"), update_freq=1)])
    first = read_scalars(tmp_path / "a" / "train")["batch_learning_rate"]
    second = read_scalars(tmp_path / "b" / "train")["batch_learning_rate"]
    assert sorted(first) == list(range(1, n1 + 1)) and sorted(second) == list(range(1, n2 + 1))
    np.testing.assert_allclose([first[b] for b in sorted(first)], SCHEDULE.at(range(n1)),
                               rtol=RTOL)
    np.testing.assert_allclose([second[b] for b in sorted(second)],
                               SCHEDULE.at(range(n1, n1 + n2)), rtol=RTOL)


def test_logger_after_tensorboard_is_unseen_there_and_warned(tmp_path):
    n = 4
    with pytest.warns(UserWarning, match="placed after keras.callbacks.TensorBoard"):
        fit(onehot_model(SCHEDULE, n), *onehot_data(n),
            callbacks=[keras.callbacks.TensorBoard(str(tmp_path), update_freq=1),
                       ss.callbacks.LearningRateLogger()])
    assert "batch_learning_rate" not in read_scalars(tmp_path / "train")


def test_guide_code_runs(tmp_path):
    import re

    guide = Path(__file__).resolve().parents[1] / "docs" / "guide" / "tensorboard.md"
    blocks = re.findall(r"```python\n(.*?)```", guide.read_text(), flags=re.S)
    assert len(blocks) == 2
    namespace: dict = {"__name__": "guide", "LOG_DIR": str(tmp_path)}
    for block in blocks:
        exec(compile(block, str(guide), "exec"), namespace)  # noqa: S102
    assert len(namespace["logged"]) == 32
