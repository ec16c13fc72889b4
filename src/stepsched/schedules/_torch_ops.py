"""torch: the operations of the in-graph evaluator as plain torch calls, and the
schedules' tables as torch tensors (made once per dtype and device)."""

from __future__ import annotations

import weakref

import numpy as np

from ._host import _number

_TORCH_CONSTANTS: dict = {}


def _torch_constant(array: np.ndarray, dtype: str, device, transform=None):
    """A torch tensor of ``array`` (a table a schedule keeps) or of ``transform(array)``,
    made once per dtype and device."""
    import torch

    key = (id(array), dtype, device, transform)
    hit = _TORCH_CONSTANTS.get(key)
    if hit is not None and hit[0]() is array:
        return hit[1]
    if len(_TORCH_CONSTANTS) > 4096:  # forget tables of schedules that are gone
        for k in [k for k, (ref, _) in _TORCH_CONSTANTS.items() if ref() is None]:
            del _TORCH_CONSTANTS[k]
    values = array if transform is None else transform(array)
    tensor = torch.as_tensor(np.asarray(values, dtype=dtype), device=device)
    _TORCH_CONSTANTS[key] = (weakref.ref(array), tensor)
    return tensor


class _TorchOps:
    """The few ``keras.ops`` the evaluator uses, as plain torch calls.

    On torch every operation runs eagerly and ``keras.ops`` adds its own
    conversion and dtype handling around each; the evaluator's inputs are
    already tensors of the right dtype, so it calls torch directly (several
    times cheaper per operation, and float64 stays float64 throughout).
    """

    #: looked up once (``__getattr__`` finds the others on every call)
    DIRECT = ("where", "sin", "cos", "exp", "log", "sqrt", "abs", "tanh", "expm1", "log1p",
              "reshape", "squeeze", "broadcast_to", "stack", "zeros_like")

    def __init__(self, device):
        import torch

        self.t = torch
        self.device = device
        for name in self.DIRECT:
            setattr(self, name, getattr(torch, name))

    def _dtype(self, dtype):
        return getattr(self.t, dtype)

    def convert_to_tensor(self, x, dtype=None):
        if self.t.is_tensor(x):
            if dtype is None:
                return x
            dtype = self._dtype(dtype)
            return x if x.dtype == dtype else x.to(dtype)
        return self.t.as_tensor(np.asarray(x), device=self.device,
                                dtype=None if dtype is None else self._dtype(dtype))

    def cast(self, x, dtype):
        return self.convert_to_tensor(x, dtype)

    def mod(self, a, b):
        return self.t.remainder(a, b)

    def power(self, a, b):
        return self.t.pow(a, b)

    def searchsorted(self, seq, values, side="left"):
        return self.t.searchsorted(seq, values, right=side == "right")

    def take(self, x, index, axis=0):
        # x[index] with a 0-d index tensor reads the index on the host (.item()): a sync
        index = index.long()
        if axis == 0 and len(x.shape) == 1:
            return self.t.take(x, index)  # one operation, any index shape
        return self.t.index_select(x, axis, index.reshape(-1)).reshape(
            x.shape[:axis] + index.shape + x.shape[axis + 1:])

    def take_along_axis(self, x, index, axis=0):
        return self.t.take_along_dim(x, index.long(), dim=axis)

    def expand_dims(self, x, axis):
        return self.t.unsqueeze(x, axis)

    def shape(self, x):
        return tuple(x.shape)

    def sum(self, x, axis=None):
        return self.t.sum(x, dim=axis)

    def full_like(self, x, value, dtype=None):
        return self.t.full_like(x, value, dtype=None if dtype is None else self._dtype(dtype))

    def clip(self, x, lo, hi):
        return self.t.clamp(x, lo, hi)

    def minimum(self, a, b):
        return self.t.clamp(a, max=b) if _number(b) else self.t.minimum(a, b)

    def maximum(self, a, b):
        return self.t.clamp(a, min=b) if _number(b) else self.t.maximum(a, b)

    def __getattr__(self, name):  # where, cos, sin, exp, stack, reshape, minimum, ...
        return getattr(self.t, name)
