"""Running the LR range test: a short ``fit()`` with a sweeping rate, then a full restore."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from .. import _validate
from ..callbacks.base import inner_optimizer
from ..schedules.primitives import Exponential, Linear
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
    r"""LR range test: train for ``steps`` batches while the rate sweeps ``start`` -> ``end``.

    The model is trained with its own compiled loss and optimizer (any
    optimizer), the rate replaced by :func:`sweep_schedule` evaluated in-graph
    from the optimizer step. The loss of every batch is recorded (the true
    batch loss: the loss metric is reset before each batch, so Keras's running
    epoch mean never enters). The sweep stops early when the bias-corrected EMA
    ``s_k`` of the losses diverges,

    .. math:: s_k - s_{\min} > (\text{diverge} - 1)\,\max(|s_{\min}|, 10^{-12}),

    which is ``s_k > diverge * s_min`` for positive losses and stays meaningful
    for negative ones, or when a loss is NaN/inf.

    Afterwards *everything* is restored: the model's variables, the optimizer's
    variables (slots and iteration counter), its rate or schedule,
    ``steps_per_execution`` and ``stop_training``; a later ``fit()`` is
    bit-identical to one without the test. An un-built optimizer is built first
    (exactly as ``fit()`` would build it) and stays built with fresh state.

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

    data = _cycle(x, y, batch_size)
    schedule = sweep_schedule(start, end, steps, mode)
    lrs = schedule.at(np.arange(steps)).astype(np.float64)
    recorder = _Recorder(lrs, smoothing, diverge, validation_data, verbose)
    with _Restored(model) as opt:
        opt._learning_rate = schedule
        opt.iterations.assign(0)
        model.fit(data, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0,
                  callbacks=[recorder])
    n = len(recorder.losses)
    reason = recorder.reason or ("completed" if n >= steps else "data_exhausted")
    return LRFinderResult(lrs[:n], recorder.losses, smoothing=smoothing,
                          stopped_early=n < steps, stop_reason=reason)


class _Restored:
    """Snapshot the model's and optimizer's state; put it all back on exit."""

    def __init__(self, model: keras.Model):
        self.model = model

    def __enter__(self):
        model = self.model
        outer = model.optimizer
        if not outer.built:
            outer.build(model.trainable_variables)
        self.opt = inner_optimizer(outer)
        self.model_values = [keras.ops.convert_to_numpy(v.value) for v in model.variables]
        self.opt_values = [keras.ops.convert_to_numpy(v.value) for v in outer.variables]
        self.rate = self.opt._learning_rate
        self.stop_training = model.stop_training
        self.steps_per_execution = model.steps_per_execution
        self.history = getattr(model, "history", None)
        model.steps_per_execution = 1
        model.train_function = None  # trace afresh: the rate object changes
        return self.opt

    def __exit__(self, *exc):
        model = self.model
        self.opt._learning_rate = self.rate
        for v, value in zip(model.variables, self.model_values, strict=True):
            v.assign(value)
        for v, value in zip(model.optimizer.variables, self.opt_values, strict=True):
            v.assign(value)
        model.steps_per_execution = self.steps_per_execution
        model.stop_training = self.stop_training
        model.train_function = None
        if self.history is not None:
            model.history = self.history
        model.reset_metrics()
        return False


class _Recorder(keras.callbacks.Callback):
    """Records the true loss of each batch and stops the sweep on divergence."""

    def __init__(self, lrs, smoothing, diverge, validation_data, verbose):
        super().__init__()
        self.lrs, self.smoothing, self.diverge = lrs, smoothing, diverge
        self.validation_data = validation_data
        self.losses: list[float] = []
        self.reason: str | None = None
        self._avg, self._best = 0.0, math.inf
        self.progbar = keras.utils.Progbar(len(lrs), verbose=verbose) if verbose else None

    def on_train_batch_begin(self, batch, logs=None):
        # the loss metric then holds this batch only: logs["loss"] is its loss
        self.model.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        if self.validation_data is not None:
            loss = _evaluate(self.model, self.validation_data)
        else:
            loss = float(logs["loss"])
        k = len(self.losses)
        self.losses.append(loss)
        if not math.isfinite(loss):
            return self._stop("nan")
        self._avg = self.smoothing * self._avg + (1.0 - self.smoothing) * loss
        smoothed = self._avg / (1.0 - self.smoothing ** (k + 1))
        if self.progbar is not None:
            self.progbar.update(k + 1, [("lr", self.lrs[k]), ("loss", smoothed)])
        self._best = min(self._best, smoothed)
        if smoothed - self._best > (self.diverge - 1.0) * max(abs(self._best), 1e-12):
            return self._stop("diverged")
        if k + 1 >= len(self.lrs):
            self.model.stop_training = True
        return None

    def _stop(self, reason: str) -> None:
        self.reason = reason
        self.model.stop_training = True


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


def _cycle(x, y, batch_size):
    """Something ``fit`` accepts that yields at least as many batches as asked (if it can)."""
    if _is_tf_dataset(x):
        if y is not None:
            raise ValueError("y must be None when x is a tf.data.Dataset")
        return x.repeat()
    if isinstance(x, keras.utils.PyDataset):
        if y is not None:
            raise ValueError("y must be None when x is a keras.utils.PyDataset")
        return _cycle_pydataset(x)
    if _is_array_like(x):
        return _cycle_arrays(x, y, batch_size or 32)
    if y is not None:
        raise ValueError("y must be None unless x is an array (or a structure of arrays)")
    if isinstance(x, Iterator):
        return x
    if hasattr(x, "__iter__"):
        return _cycle_iterable(x)
    raise TypeError(f"x must be arrays, a tf.data.Dataset, a PyDataset or an iterable of "
                    f"batches, got {type(x).__name__}")


def _cycle_arrays(x, y, batch_size):
    n = len(keras.tree.flatten(x)[0])
    if n == 0:
        raise ValueError("x must not be empty")
    for leaf in keras.tree.flatten(x) + keras.tree.flatten(y):
        if len(leaf) != n:
            raise ValueError(f"all arrays in x and y must have the same length, got {n} "
                             f"and {len(leaf)}")
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
