"""The two evaluators behind every formula.

A schedule's formula is written once against the small namespace below. ``Host``
runs it with NumPy in float64 over an array of steps (``schedule.at``); ``Graph``
runs it with ``keras.ops`` inside the traced train step (``schedule(step)``).
Only operations that trace on TensorFlow (incl. XLA), JAX and torch are used:
no Python branching on values, and piece look-ups are ``searchsorted`` +
``take`` rather than chains of conditionals.
"""

from __future__ import annotations

import numpy as np


class Host:
    """NumPy, float64."""

    dtype = "float64"

    @staticmethod
    def const(x):
        return np.asarray(x, dtype=np.float64)

    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    cos = staticmethod(np.cos)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)
    floor = staticmethod(np.floor)
    ceil = staticmethod(np.ceil)
    abs = staticmethod(np.abs)
    tanh = staticmethod(np.tanh)

    @staticmethod
    def power(x, y):
        return np.power(x, y)

    @staticmethod
    def bucket(boundaries, t):
        """Number of boundaries <= t (index of the piece that contains t)."""
        return np.searchsorted(np.asarray(boundaries, np.float64), t, side="right")

    @staticmethod
    def gather(values, index):
        return np.asarray(values, np.float64)[index]

    @staticmethod
    def select(columns, index):
        """``columns[index[j]][j]`` for every j (pick one piece's value per step)."""
        stacked = np.stack([np.broadcast_to(c, index.shape) for c in columns])
        return np.take_along_axis(stacked, index[None, :], axis=0)[0]


class Graph:
    """``keras.ops`` on the active backend; float64 where the backend allows it."""

    def __init__(self, dtype: str):
        from keras import ops

        self.ops = ops
        self.dtype = dtype
        self.where = ops.where
        self.minimum = ops.minimum
        self.maximum = ops.maximum
        self.cos = ops.cos
        self.exp = ops.exp
        self.log = ops.log
        self.sqrt = ops.sqrt
        self.floor = ops.floor
        self.ceil = ops.ceil
        self.abs = ops.abs
        self.tanh = ops.tanh

    def const(self, x):
        return self.ops.convert_to_tensor(np.asarray(x, dtype=self.dtype))

    def power(self, x, y):
        return self.ops.power(self.const(x) if not hasattr(x, "shape") else x,
                              self.const(y) if not hasattr(y, "shape") else y)

    def bucket(self, boundaries, t):
        return self.ops.searchsorted(self.const(boundaries), t, side="right")

    def gather(self, values, index):
        return self.ops.take(self.const(values), index, axis=0)

    def select(self, columns, index):
        ops = self.ops
        stacked = ops.stack([ops.broadcast_to(ops.cast(c, self.dtype), ops.shape(index))
                             for c in columns])
        return ops.take_along_axis(stacked, ops.expand_dims(index, 0), axis=0)[0]


def graph_dtype() -> str:
    """float64 in-graph where the backend supports it, float32 on JAX without x64."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return "float64" if jax.config.jax_enable_x64 else "float32"
    return "float64"
