"""Shared helpers: every test runs on the backend named by KERAS_BACKEND."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


def graph_values(schedule, steps, dtype="int32", scalar=False, jit_compile=True):
    """Evaluate ``schedule`` in-graph (jit-compiled on TF and JAX) at ``steps``.

    With ``scalar=True`` the compiled function takes one 0-d step, as the
    optimizer passes it, and is called once per step (traced once).
    """
    steps = np.asarray(steps, dtype=dtype)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda s: schedule(s), jit_compile=jit_compile)
        convert = tf.constant
    elif BACKEND == "jax":
        import jax

        fn, convert = jax.jit(lambda s: schedule(s)), np.asarray
    else:
        fn, convert = schedule, keras.ops.convert_to_tensor
    if scalar:
        outs = [fn(convert(s)) for s in steps]
        assert all(tuple(keras.ops.shape(o)) == () for o in outs)
        out = keras.ops.stack(outs)
    else:
        out = fn(convert(steps))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    return keras.ops.convert_to_numpy(out)


@pytest.fixture
def backend():
    return BACKEND
