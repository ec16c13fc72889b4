"""Shared helpers: every test runs on the backend named by KERAS_BACKEND."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


def graph_values(schedule, steps, dtype="int32"):
    """Evaluate ``schedule`` in-graph (jit-compiled on TF and JAX) at ``steps``."""
    steps = np.asarray(steps, dtype=dtype)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda s: schedule(s), jit_compile=True)
        out = fn(tf.constant(steps))
    elif BACKEND == "jax":
        import jax

        out = jax.jit(lambda s: schedule(s))(steps)
    else:
        out = schedule(keras.ops.convert_to_tensor(steps))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    return keras.ops.convert_to_numpy(out)


@pytest.fixture
def backend():
    return BACKEND
