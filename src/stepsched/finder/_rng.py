"""The random state a short training run consumes outside the model, saved and put back.

The model's own random state (the ``keras.random.SeedGenerator`` of each
``Dropout`` and other random layer) is a model variable and is restored with
the other variables. What training draws from outside the model:

- torch backend: an unseeded ``Dropout`` uses torch's fast path,
  ``torch.nn.functional.dropout``, which draws from torch's global generator
  (CPU, and each initialised CUDA device / MPS);
- any backend: ``keras.random.*`` called with ``seed=None`` (custom layers,
  eager code) draws from Keras's global ``SeedGenerator``, which is created on
  first use from Python's ``random``;
- Python's ``random`` and NumPy's global generator, which Keras and user code
  may draw from (new ``SeedGenerator(None)`` seeds, augmentation code).

JAX has no global generator (its random ops take explicit keys). TensorFlow's
own op-level seeds (``tf.random.*`` without a seed, ``Dataset.shuffle``
without a seed) are counters inside TensorFlow that cannot be read back; Keras
does not use them, and a data pipeline's own randomness is the user's.
"""

from __future__ import annotations

import random
import sys

import keras
import numpy as np

from .. import _keras


class RandomState:
    """Snapshot of the random state outside the model; ``restore()`` puts it back."""

    def __init__(self):
        self.python = random.getstate()
        self.numpy = np.random.get_state()
        self.torch = _torch_state() if keras.backend.backend() == "torch" else None
        self.store = _keras.global_state()
        self.generator = None
        self.generator_state = None
        if self.store is not None:
            self.generator = self.store.get_global_attribute(_keras.GLOBAL_SEED_GENERATOR)
            if self.generator is not None:
                self.generator_state = keras.ops.convert_to_numpy(self.generator.state.value)

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        if self.torch is not None:
            _set_torch_state(self.torch)
        if self.store is not None:
            # the generator the run created (if any) goes: the next use creates it
            # again from Python's random, now restored, so with the same seed
            self.store.set_global_attribute(_keras.GLOBAL_SEED_GENERATOR, self.generator)
            if self.generator is not None:
                self.generator.state.assign(self.generator_state)


def _torch_state() -> dict:
    torch = sys.modules.get("torch")
    if torch is None:  # pragma: no cover - the torch backend imports torch
        return {}
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        state["mps"] = mps.get_rng_state()
    return state


def _set_torch_state(state: dict) -> None:
    torch = sys.modules["torch"]
    if "cpu" in state:
        torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state:
        torch.mps.set_rng_state(state["mps"])
