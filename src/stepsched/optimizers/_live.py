"""The value a Keras optimizer reads as a scheduled hyperparameter during its update.

Keras's update steps read their hyperparameters as Python floats: they cast
them (``ops.cast(self.beta_1, dtype)``), do arithmetic with them
(``1 - self.beta_1``) and, in two places, test them (SGD ``momentum != 0``,
RMSprop ``momentum > 0``). While an update is traced, stepsched puts a
``live(value)`` in the attribute: a tensor for arithmetic and casting (the
schedule evaluated once at this step) that tests as a positive number, so the
optimizer keeps the code path of a non-zero hyperparameter. Outside the
update the attribute holds its nominal float again.
"""

from __future__ import annotations

import keras

from .. import _keras

_BACKEND = keras.backend.backend()


def _truth_compare(op, other):
    # A scheduled hyperparameter takes the branch of a positive number: SGD keeps
    # its momentum slots (``!= 0``), RMSprop its momentum branch (``> 0``).
    if isinstance(other, bool) or not isinstance(other, (int, float)) or other != 0:
        raise TypeError(f"a scheduled hyperparameter has no Python value inside the update "
                        f"step; Keras compared it with {other!r}")
    return {"ne": True, "gt": True, "ge": True, "eq": False, "lt": False, "le": False}[op]


if _BACKEND == "torch":
    import torch

    class Live(torch.Tensor):
        """A 0-d torch tensor that tests as a positive number (see module docstring)."""

        __torch_function__ = _keras.torch_plain_results()  # results are plain tensors

        def __ne__(self, other):
            if isinstance(other, torch.Tensor):
                return torch.Tensor.__ne__(self, other)
            return _truth_compare("ne", other)

        def __eq__(self, other):
            if isinstance(other, torch.Tensor):
                return torch.Tensor.__eq__(self, other)
            return _truth_compare("eq", other)

        def __gt__(self, other):
            if isinstance(other, torch.Tensor):
                return torch.Tensor.__gt__(self, other)
            return _truth_compare("gt", other)

        def __lt__(self, other):
            if isinstance(other, torch.Tensor):
                return torch.Tensor.__lt__(self, other)
            return _truth_compare("lt", other)

        def __bool__(self):
            return True

        __hash__ = torch.Tensor.__hash__

    def live(value):
        return _keras.torch_as_subclass(Live, keras.ops.convert_to_tensor(value, "float32"))

else:

    def _v(x):
        return x.value if isinstance(x, Live) else x

    class Live:
        """A scalar tensor for Keras's arithmetic and casts that tests as a positive number.

        TensorFlow converts it through ``__tf_tensor__``, JAX through
        ``__jax_array__``; arithmetic operators return plain tensors.
        """

        __slots__ = ("value",)

        def __init__(self, value):
            self.value = value

        def __tf_tensor__(self, dtype=None, name=None):
            import tensorflow as tf

            value = self.value if dtype is None else tf.cast(self.value, dtype)
            return tf.convert_to_tensor(value, name=name)

        def __jax_array__(self):
            return self.value

        @property
        def dtype(self):
            return self.value.dtype

        @property
        def shape(self):
            return self.value.shape

        @property
        def ndim(self):
            return 0

        def __add__(self, o):
            return self.value + _v(o)

        def __radd__(self, o):
            return _v(o) + self.value

        def __sub__(self, o):
            return self.value - _v(o)

        def __rsub__(self, o):
            return _v(o) - self.value

        def __mul__(self, o):
            return self.value * _v(o)

        def __rmul__(self, o):
            return _v(o) * self.value

        def __truediv__(self, o):
            return self.value / _v(o)

        def __rtruediv__(self, o):
            return _v(o) / self.value

        def __pow__(self, o):
            return self.value ** _v(o)

        def __rpow__(self, o):
            return _v(o) ** self.value

        def __neg__(self):
            return -self.value

        def __ne__(self, o):
            return _truth_compare("ne", o)

        def __eq__(self, o):
            return _truth_compare("eq", o)

        def __gt__(self, o):
            return _truth_compare("gt", o)

        def __ge__(self, o):
            return _truth_compare("ge", o)

        def __lt__(self, o):
            return _truth_compare("lt", o)

        def __le__(self, o):
            return _truth_compare("le", o)

        def __bool__(self):
            return True

        __hash__ = object.__hash__

        def __float__(self):
            raise TypeError("a scheduled hyperparameter has no Python value inside the update "
                            "step (it is a tensor evaluated at the optimizer's step)")

        def __repr__(self):
            return f"Live({self.value!r})"

    if _BACKEND == "jax":  # jitted jnp functions (jnp.clip) take it apart as a pytree
        import jax

        jax.tree_util.register_pytree_node(Live, lambda x: ((x.value,), None),
                                           lambda _, children: Live(children[0]))

    def live(value):
        return Live(keras.ops.cast(value, "float32"))
