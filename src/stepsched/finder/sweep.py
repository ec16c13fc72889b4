"""Running the LR range test: a short ``fit()`` with a sweeping rate, then a full restore."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from .. import _keras, _validate
from .._keras import inner_optimizer
from .._stats import EMA
from ..schedules.primitives import Exponential, Linear
from ._rng import RandomState
from .result import LRFinderResult

MODES = ("exponential", "linear")


def sweep_schedule(start: float, end: float, steps: int, mode: str = "exponential"):
    r"""The rate applied at sweep step ``t`` (``0 <= t < steps``).

    - ``"exponential"``: :math:`\text{start}\,(\text{end}/\text{start})^{t/(n-1)}`
    - ``"linear"``: :math:`\text{start} + (\text{end} - \text{start})\,t/(n-1)`

    >>> sweep_schedule(1e-3, 1.0, 4).at([0, 3]).tolist() == [np.float32(1e-3), 1.0]
    True
    """
    if mode == "exponential":
        return Exponential(start, end / start, every=steps - 1, duration=steps - 1)
    return Linear(start, end, steps - 1)


def find_lr(model: keras.Model, x: Any, y: Any = None, *, batch_size: int | None = None,
            start: float = 1e-7, end: float = 10.0, steps: int = 100,
            mode: str = "exponential", smoothing: float = 0.98, diverge: float = 4.0,
            validation_data: Any = None, verbose: int = 1) -> LRFinderResult:
    r"""LR range test: train for ``steps`` updates while the rate sweeps ``start`` -> ``end``.

    The model is trained with its own compiled loss and optimizer (any
    optimizer), the rate replaced by :func:`sweep_schedule` evaluated in-graph
    from the optimizer step. The loss of every batch is recorded (the true
    batch loss: the loss metric is reset before each batch, so Keras's running
    epoch mean never enters). The sweep stops early when the bias-corrected EMA
    ``s_k`` of the losses (:class:`stepsched._stats.EMA`) diverges,

    .. math:: s_k - s_{\min} > (\text{diverge} - 1)\,\max(|s_{\min}|, 10^{-12}),

    which is ``s_k > diverge * s_min`` for positive losses and stays meaningful
    for negative ones, or when a loss is NaN/inf.

    With ``gradient_accumulation_steps=k`` on the optimizer, the sweep counts
    optimizer *updates*: ``steps`` updates of ``k`` micro-batches each
    (``k * steps`` batches), the rate changes from one update to the next, and
    the loss recorded for an update is the loss of its ``k`` micro-batches
    together (their sample-weighted mean, before the update), just as without
    accumulation the loss of a batch is recorded against the rate applied to
    it. The sweep starts from empty accumulators; a partial accumulation in
    progress is put back afterwards.

    Afterwards *everything* is restored: the model's variables (including the
    seed state of its random layers), the optimizer's variables (slots, iteration
    counter, gradient accumulators), its rate or schedule,
    ``steps_per_execution`` and ``stop_training``, and the random state outside
    the model that training draws from (torch's global generator, which an
    unseeded ``Dropout`` uses on the torch backend; Keras's global
    ``SeedGenerator`` behind ``keras.random.*(seed=None)``; Python's ``random``
    and NumPy's global generator): a later ``fit()`` is bit-identical to one
    without the test, on every backend. An un-built optimizer is built first
    (exactly as ``fit()`` would build it) and stays built with fresh state.

    It runs under a ``tf.distribute`` strategy (build and compile the model in
    ``strategy.scope()`` as for ``fit()``): each global batch of ``batch_size``
    is split over the replicas, and the recorded loss is the loss of the whole
    global batch, the same as on one device. There ``x`` must be arrays (fed
    through ``tf.data``) or a ``tf.data.Dataset``: Keras 3.15 reads a Python
    generator or a ``PyDataset`` from several threads under a strategy, and the
    batches come out repeated or mixed, so those are refused.

    ``verbose=1`` shows a Keras progress bar over the sweep (the rate, the
    batch loss and the smoothed loss at each step), ``verbose=2`` one line at
    the end, ``verbose=0`` nothing.

    ``x``/``y``/``batch_size`` are what ``model.fit`` accepts: NumPy arrays
    (or dicts/lists of them), a ``tf.data.Dataset`` (repeated as needed),
    a ``keras.utils.PyDataset`` or any re-iterable loader (cycled), or a
    Python generator (used once: if it runs out, ``stop_reason`` is
    ``"data_exhausted"``). Arrays are taken in order, not shuffled. With
    ``validation_data`` (a tuple ``(x_val, y_val)`` or a dataset), the loss
    recorded at each step is the validation loss after that step's update
    (slower: one evaluation per step).

    >>> import keras, numpy as np, stepsched as ss
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x = np.random.default_rng(0).normal(size=(256, 3)).astype("float32")
    >>> result = ss.find_lr(model, x, x.sum(1), steps=50, verbose=0)
    >>> len(result.lrs) <= 50 and result.suggestion() > 0
    True
    """
    start = _validate.number("start", start, positive=True)
    end = _validate.number("end", end, positive=True)
    if not end > start:
        raise ValueError(f"end must be > start, got start={start!r}, end={end!r}")
    steps = _validate.integer("steps", steps, minimum=2)
    mode = _validate.choice("mode", mode, MODES)
    smoothing = _validate.number("smoothing", smoothing)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    diverge = _validate.number("diverge", diverge)
    if not diverge > 1.0:
        raise ValueError(f"diverge must be > 1, got {diverge!r}")
    batch_size = _validate.integer("batch_size", batch_size, minimum=1, allow_none=True)
    verbose = _validate.integer("verbose", verbose, minimum=0)
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        raise ValueError("model must be compiled with an optimizer and a loss before find_lr")
    if not model.built:
        raise ValueError("model must be built before find_lr (give it an Input, call "
                         "model.build(input_shape) or run it on one batch) so its weights "
                         "can be saved and restored")

    data = _cycle(x, y, batch_size, replicas=_replicas(model))
    schedule = sweep_schedule(start, end, steps, mode)
    lrs = schedule.at(np.arange(steps)).astype(np.float64)
    accumulation = _accumulation_steps(inner_optimizer(model.optimizer))
    recorder = _Recorder(lrs, smoothing, diverge, validation_data, verbose, accumulation)
    with _Restored(model) as opt:
        # Keras evaluates the rate at its raw counter, which counts micro-batches
        # under accumulation; per_update(k) turns it into the update index.
        _keras.set_rate(opt, schedule.per_update(accumulation) if accumulation > 1
                        else schedule)
        _counter(opt).assign(0)
        for accumulator in _accumulators(opt):
            accumulator.assign(keras.ops.zeros_like(accumulator.value))
        model.fit(data, epochs=1, steps_per_epoch=steps * accumulation, shuffle=False,
                  verbose=0, callbacks=[recorder])
    n = len(recorder.losses)
    reason = recorder.reason or ("completed" if n >= steps else "data_exhausted")
    return LRFinderResult(lrs[:n], recorder.losses, smoothing=smoothing,
                          stopped_early=n < steps, stop_reason=reason)


_MISSING = object()


class _Restored:
    """Snapshot the model's and optimizer's state; put it all back on exit."""

    def __init__(self, model: keras.Model):
        self.model = model

    def __enter__(self):
        model = self.model
        self.random = RandomState()
        self.unbuilt = _unbuilt_compile_state(model)
        outer = model.optimizer
        if not outer.built:
            # as fit() builds it: under a tf.distribute strategy, in its scope
            strategy = getattr(model, "distribute_strategy", None)  # TF backend only
            with strategy.scope() if strategy is not None else contextlib.nullcontext():
                outer.build(model.trainable_variables)
        self.opt = inner_optimizer(outer)
        self.model_values = [keras.ops.convert_to_numpy(v.value) for v in model.variables]
        self.opt_values = [keras.ops.convert_to_numpy(v.value) for v in outer.variables]
        self.rate = _keras.rate_of(self.opt)
        self.stop_training = model.stop_training
        self.steps_per_execution = model.steps_per_execution
        self.history = getattr(model, "history", _MISSING)
        # the compiled steps as they were: the next fit() reuses them as it would
        # have (a retrace would pick up the current global seed generator on TF)
        self.functions = {name: getattr(model, name, None)
                          for name in ("train_function", "test_function")}
        model.steps_per_execution = 1
        model.train_function = None  # trace afresh: the rate object changes
        return self.opt

    def __exit__(self, *exc):
        model = self.model
        _keras.set_rate(self.opt, self.rate)
        for v, value in zip(model.variables, self.model_values, strict=True):
            v.assign(value)
        for v, value in zip(model.optimizer.variables, self.opt_values, strict=True):
            v.assign(value)
        model.steps_per_execution = self.steps_per_execution
        model.stop_training = self.stop_training
        for name, function in self.functions.items():
            setattr(model, name, function)
        if self.history is not _MISSING:
            model.history = self.history
        elif "history" in vars(model):
            del model.history  # the sweep's History goes
        model.reset_metrics()
        for part in self.unbuilt:
            part.built = False  # built again by the next fit, from the same arguments
        self.random.restore()
        return False


def _unbuilt_compile_state(model) -> list:
    """The compiled loss and metrics that the sweep's ``fit()`` will build first.

    The first ``fit()`` of a freshly compiled model peeks at one batch to build
    its loss and metrics (on torch, with array inputs, that peek creates a
    ``DataLoader`` iterator, which draws its seed from torch's global
    generator). The sweep would otherwise take that first build away from the
    ``fit()`` that follows, and with it one draw: they are marked unbuilt again
    afterwards, so the next ``fit()`` builds them, and draws, as it would have.
    """
    return [p for p in _keras.compile_state(model) if getattr(p, "built", True) is False]


def _accumulation_steps(opt) -> int:
    return int(getattr(opt, "gradient_accumulation_steps", None) or 1)


def _counter(opt):
    """The optimizer's raw step counter, the one its rate is evaluated at.

    Under gradient accumulation the public ``iterations`` is computed from it
    (the raw counter ``// k``) and cannot be assigned.
    """
    return _keras.step_variable(opt)


def _accumulators(opt) -> list:
    return _keras.gradient_accumulators(opt) if _accumulation_steps(opt) > 1 else []


class _Recorder(keras.callbacks.Callback):
    """Records the true loss of each step and stops the sweep on divergence.

    A step is one optimizer update: ``accumulation`` batches (1 without
    gradient accumulation). The loss metric is reset before the first batch of
    each step, so at its last batch ``logs["loss"]`` is the loss of the step's
    batches only.
    """

    def __init__(self, lrs, smoothing, diverge, validation_data, verbose, accumulation=1):
        super().__init__()
        self.lrs, self.diverge, self.accumulation = lrs, diverge, accumulation
        self.validation_data = validation_data
        self.losses: list[float] = []
        self.reason: str | None = None
        self.ema, self._best = EMA(smoothing), math.inf
        # the values shown are this step's, not Keras's default running average
        self.progbar = (keras.utils.Progbar(len(lrs), verbose=verbose,
                                            stateful_metrics=["lr", "loss", "smoothed"])
                        if verbose else None)

    def on_train_batch_begin(self, batch, logs=None):
        if batch % self.accumulation == 0:
            self.model.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.accumulation:
            return
        if self.validation_data is not None:
            loss = _evaluate(self.model, self.validation_data)
        else:
            loss = float(logs["loss"])
        k = len(self.losses)
        self.losses.append(loss)
        if math.isfinite(loss):
            smoothed = self.ema.update(loss)
            self._best = min(self._best, smoothed)
            if smoothed - self._best > (self.diverge - 1.0) * max(abs(self._best), 1e-12):
                self.reason = "diverged"
        else:
            smoothed = self.ema.value
            self.reason = "nan"
        done = self.reason is not None or k + 1 >= len(self.lrs)
        if self.progbar is not None:
            self.progbar.update(k + 1, [("lr", self.lrs[k]), ("loss", loss),
                                        ("smoothed", smoothed)], finalize=done)
        if done:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.progbar is not None and self.reason is None and len(self.losses) < len(self.lrs):
            self.progbar.update(len(self.losses), finalize=True)  # the data ran out


def _evaluate(model, validation_data) -> float:
    if isinstance(validation_data, tuple):
        logs = model.evaluate(*validation_data, verbose=0, return_dict=True)
    else:
        logs = model.evaluate(validation_data, verbose=0, return_dict=True)
    return float(logs["loss"])


# ---------------------------------------------------------------- input data
def _is_array_like(x) -> bool:
    leaves = keras.tree.flatten(x)
    return bool(leaves) and all(hasattr(leaf, "shape") and len(leaf.shape) >= 1
                                and not _is_tf_dataset(leaf) for leaf in leaves)


def _is_tf_dataset(x) -> bool:
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "repeat") \
        and hasattr(x, "element_spec")


def _replicas(model) -> int:
    """Replicas of the ``tf.distribute`` strategy the model was built under (1 without)."""
    strategy = getattr(model, "distribute_strategy", None)  # TF backend only
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)


def _cycle(x, y, batch_size, replicas: int = 1):
    """Something ``fit`` accepts that yields at least as many batches as asked (if it can)."""
    if _is_tf_dataset(x):
        if y is not None:
            raise ValueError("y must be None when x is a tf.data.Dataset")
        return x.repeat()
    if _is_array_like(x):
        if replicas > 1:  # a tf.data pipeline, as Keras itself makes from arrays
            import tensorflow as tf

            _check_arrays(x, y)
            slices = x if y is None else (x, y)
            return tf.data.Dataset.from_tensor_slices(slices).batch(batch_size or 32).repeat()
        return _cycle_arrays(x, y, batch_size or 32)
    if replicas > 1:
        # Keras 3.15 reads a Python generator from several threads under a strategy:
        # batches come out repeated, skipped or mixed (measured with MirroredStrategy)
        raise TypeError(f"under a tf.distribute strategy ({replicas} replicas), x must be "
                        f"arrays or a tf.data.Dataset, got {type(x).__name__}: Keras reads "
                        "Python generators and PyDatasets from several threads there, and "
                        "batches come out repeated or mixed; build a tf.data.Dataset instead")
    if isinstance(x, keras.utils.PyDataset):
        if y is not None:
            raise ValueError("y must be None when x is a keras.utils.PyDataset")
        return _cycle_pydataset(x)
    if y is not None:
        raise ValueError("y must be None unless x is an array (or a structure of arrays)")
    if isinstance(x, Iterator):
        return x
    if hasattr(x, "__iter__"):
        return _cycle_iterable(x)
    raise TypeError(f"x must be arrays, a tf.data.Dataset, a PyDataset or an iterable of "
                    f"batches, got {type(x).__name__}")


def _check_arrays(x, y) -> int:
    n = len(keras.tree.flatten(x)[0])
    if n == 0:
        raise ValueError("x must not be empty")
    for leaf in keras.tree.flatten(x) + keras.tree.flatten(y):
        if len(leaf) != n:
            raise ValueError(f"all arrays in x and y must have the same length, got {n} "
                             f"and {len(leaf)}")
    return n


def _cycle_arrays(x, y, batch_size):
    n = _check_arrays(x, y)
    while True:
        for i in range(0, n, batch_size):
            xb = keras.tree.map_structure(lambda a, i=i: a[i:i + batch_size], x)
            if y is None:
                yield (xb,)
            else:
                yield xb, keras.tree.map_structure(lambda a, i=i: a[i:i + batch_size], y)


def _cycle_pydataset(ds):
    while True:
        for i in range(len(ds)):
            yield ds[i]
        ds.on_epoch_end()


def _cycle_iterable(loader):
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            return
