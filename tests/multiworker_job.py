"""One process of a two-process training job, run by ``tests/test_multiworker.py``.

Usage: ``python tests/multiworker_job.py CONFIG_JSON``, with ``KERAS_BACKEND`` set.
``CONFIG_JSON`` holds ``engine`` (``"mwms"``: ``tf.distribute.MultiWorkerMirroredStrategy``
from ``TF_CONFIG``; ``"jax"``: ``keras.distribution.initialize`` + ``DataParallel``),
``index`` (this process), ``ports`` (one free loopback port per process; JAX uses
the first for its coordinator), ``out`` (where the JSON result goes), ``spe``
(the ``steps_per_execution`` values to run, one fit each) and, for the
kill-and-resume test, ``backup`` (a directory for ``BackupAndRestore``) and
``kill_at`` (the process with ``index == 1`` sends itself SIGKILL at the start
of the batch that would make that step).

The same ``train`` runs in one process with no distribution as the reference
(``tests/test_multiworker.py`` imports it).

The probe (one global batch = two samples, one per process):

- a kernel ``w`` of ``N`` entries fed the one-hot row ``e_k`` at global step
  ``k`` (both samples), which gets the gradient ``e_k``, so after training
  ``-w[k]`` is the rate applied at step ``k``, for every step, whatever
  ``steps_per_execution`` hides from callbacks;
- a scalar ``v`` times a per-sample feature ``s``: ``+1`` on process 0's
  sample, ``-3`` on process 1's. Its gradient is the global mean of ``s``,
  ``-1``, so ``v`` grows by the applied rate every step.

The output is ``s * v`` (``w`` enters with a zero value, through
``h - stop_gradient(h)``), so the loss, the mean output, is ``-v`` over the
global batch, but ``+v`` (growing) on process 0's sample alone and ``-3v``
(falling) on process 1's: a plateau callback with ``mode="max"`` reduces the
rate on the global loss and on process 1's local loss, never on process 0's.
If a process decided on its own shard, the two processes would diverge.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEPS_PER_EPOCH = 6
EPOCHS = 3
N = STEPS_PER_EPOCH * EPOCHS
SIGNS = (1.0, -3.0)  # the feature s of each process's sample
PLATEAU = dict(monitor="loss", every=2, mode="max", patience=1, factor=0.5, cooldown=1)
SAVE_FREQ = 4  # BackupAndRestore: every 4 batches (mid-epoch)


def schedule():
    """Durations in epochs and fractions, so both must resolve from fit()'s parameters."""
    import stepsched as ss

    return (ss.Warmup(ss.epochs(1), start=0.1)
            >> ss.Cosine(1.0, 0.2, ss.fraction(0.5)) >> ss.Constant(0.2))


def data(index: int | None):
    """Rows ``[e_k, s]``: both samples for one process (``index=None``), else this one's."""
    import numpy as np

    eye = np.eye(N, dtype="float32")
    signs = SIGNS if index is None else (SIGNS[index],)
    rows = [np.concatenate([eye[k], [s]]).astype("float32") for k in range(N) for s in signs]
    x = np.stack(rows)
    return x, x[:, :1]


def build_model(spe: int):
    import keras
    from keras import ops

    from tests.probe import mean_output

    class SplitProbe(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(N,), initializer="zeros", name="w")
            self.v = self.add_weight(shape=(), initializer="zeros", name="v")

        def call(self, x):
            h = ops.sum(x[:, :N] * self.w, axis=-1, keepdims=True)
            return x[:, N:] * self.v + (h - ops.stop_gradient(h))

    inputs = keras.Input((N + 1,))
    model = keras.Model(inputs, SplitProbe()(inputs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule()), loss=mean_output,
                  steps_per_execution=spe)
    return model


def patch_keras_for_mwms() -> None:
    """Work around Keras 3.15's ``fit()`` under ``MultiWorkerMirroredStrategy`` (1 of 2).

    Keras averages each step's metric results over the workers with
    ``strategy.reduce("MEAN", value, axis=0)``; a loss is a scalar, which has
    no axis 0 ("Invalid reduction dimension 0 for input with 0 dimensions"),
    so the first step fails to trace. Average over the replicas only
    (``axis=None``), which is what the single-machine strategies do.
    """
    import keras
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(
                strategy):
            return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None),
                                            values)
        return original(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica


def build_on_local_batch(model, strategy) -> None:
    """Work around Keras 3.15's ``fit()`` under ``MultiWorkerMirroredStrategy`` (2 of 2).

    Before training, Keras builds the model from a first batch averaged over
    the replicas with ``strategy.reduce("MEAN", (x, y))``; the multi-worker
    strategy refuses a tuple there ("Attempt to convert a value (PerReplica...)
    with an unsupported type", keras-team/keras#20585), so ``fit()`` fails
    before it starts. Only the shapes matter for building: build from this
    worker's own share of the batch instead.
    """
    import keras

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build


def _number(x) -> float:
    import keras

    return float(keras.ops.convert_to_numpy(x))


def train(spe: int, index: int | None = None, backup: str | None = None,
          kill_at: int | None = None, strategy=None) -> dict:
    """One fit of the probe; what each process saw, as plain JSON data."""
    import contextlib

    import keras
    import numpy as np

    import stepsched as ss
    from stepsched import _keras

    with strategy.scope() if strategy else contextlib.nullcontext():
        model = build_model(spe)
    if strategy is not None:
        build_on_local_batch(model, strategy)
    layer = model.layers[-1]
    plateau = ss.callbacks.ReduceLROnPlateau(**PLATEAU)
    rows = []

    class Recorder(keras.callbacks.Callback):
        """After every batch hook: the step, ``v``, the logs and the plateau state."""

        def record(self, logs):
            rows.append({"step": int(_number(self.model.optimizer.iterations)),
                         "v": _number(layer.v),
                         "loss": None if logs is None else float(logs["loss"]),
                         "lr": None if logs is None else float(logs["learning_rate"]),
                         "multiplier": plateau.multiplier,
                         "state": dict(plateau.plateau.values)})
            print(json.dumps(rows[-1]), flush=True)  # progress, read by the kill test

        def on_train_begin(self, logs=None):
            self.record(None)

        def on_train_batch_end(self, batch, logs=None):
            self.record(logs)

    class Kill(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if int(_number(self.model.optimizer.iterations)) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [ss.callbacks.LearningRateLogger(), plateau]
    if backup is not None:
        # after the plateau callback: a backup made at the batch end of a check step then
        # holds the state after that check (placed before it, the backup misses the check)
        callbacks.append(keras.callbacks.BackupAndRestore(
            os.path.join(backup, f"process{index or 0}"), save_freq=SAVE_FREQ))
    callbacks.append(Recorder())
    if kill_at is not None and index == 1:
        callbacks.append(Kill())
    # tf.distribute takes the whole input on every worker and shards it (global batch 2);
    # keras.distribution on JAX takes each process's share (1 sample, global batch 2).
    share = index if keras.backend.backend() == "jax" else None
    x, y = data(share)
    batch_size = 2 if share is None else 1
    model.fit(x, y, batch_size=batch_size, epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH,
              shuffle=False, verbose=0, callbacks=callbacks)
    planned = _keras.rate_of(model.optimizer).arg("schedule")
    return {
        "kernel": (-keras.ops.convert_to_numpy(layer.w).astype(np.float64)).tolist(),
        "rows": rows,
        "context": list(planned.context),
        "planned": planned.at(range(N)).astype(np.float64).tolist(),
        "reductions": [list(r) for r in plateau.reductions],
        "iterations": int(_number(model.optimizer.iterations)),
    }


def setup_tensorflow(config: dict):
    """This process as worker ``config["index"]`` of a MultiWorkerMirroredStrategy cluster."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in config["ports"]]}
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": config["index"]}})
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    patch_keras_for_mwms()
    return strategy.num_replicas_in_sync, strategy


def setup_jax(config: dict):
    """This process as process ``config["index"]`` of JAX's distributed runtime, DataParallel."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras

    keras.distribution.initialize(f"127.0.0.1:{config['ports'][0]}",
                                  num_processes=len(config["ports"]),
                                  process_id=config["index"])
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    distribution.auto_shard_dataset = False  # each process feeds its own share (see data())
    keras.distribution.set_distribution(distribution)
    return len(devices), None


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.path.insert(0, str(ROOT))
    replicas, strategy = (setup_tensorflow if config["engine"] == "mwms" else setup_jax)(config)
    runs = {}
    for spe in config["spe"]:
        runs[spe] = train(spe, config["index"], config.get("backup"), config.get("kill_at"),
                          strategy)
    Path(config["out"]).write_text(json.dumps({"replicas": replicas, "runs": runs}))


if __name__ == "__main__":
    main()
