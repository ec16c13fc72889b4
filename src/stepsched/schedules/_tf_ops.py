"""TensorFlow: the bare graph operations the in-graph evaluator uses where ``keras.ops``
(or ``tf.searchsorted``) would add operations around them."""

from __future__ import annotations

import numpy as np


def upper_bound(edges: np.ndarray, t, ops):
    """The number of ``edges`` <= ``t`` (int32), in as few graph operations as it takes:
    one comparison for one edge, else the bare ``UpperBound`` kernel (``tf.searchsorted``
    adds a dozen shape operations around it)."""
    import tensorflow as tf

    if edges.size == 1:
        return ops.cast(t >= float(edges[0]), "int32")
    found = tf.raw_ops.UpperBound(sorted_inputs=tf.constant(edges[None, :], t.dtype),
                                  values=tf.expand_dims(t, 0), out_type=tf.int32)
    return tf.squeeze(found, 0)


def gather(table, index):
    """``table[index]`` for indices in range (none of ``take``'s wrapping)."""
    import tensorflow as tf

    return tf.gather(table, index)
