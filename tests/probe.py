"""The exact probe: recover every applied learning rate from one weight.

A model with a single scalar weight ``w`` outputs ``w`` for every sample, and
the loss is the mean output, so ``dloss/dw = 1``. Plain SGD then makes
``w_{k+1} = w_k - lr_k``: the differences of ``w`` are the applied rates.
"""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="stepsched_tests")
class ProbeLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(), initializer="zeros", name="w")

    def call(self, x):
        return keras.ops.ones_like(x[:, :1]) * self.w


@keras.saving.register_keras_serializable(package="stepsched_tests")
def mean_output(y_true, y_pred):
    return keras.ops.mean(y_pred, axis=-1)


def probe_model(learning_rate, **compile_kwargs) -> keras.Model:
    """A compiled probe model trained with SGD at ``learning_rate``."""
    inputs = keras.Input((1,))
    model = keras.Model(inputs, ProbeLayer()(inputs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss=mean_output,
                  **compile_kwargs)
    return model


def probe_data(n_steps: int, batch_size: int = 2):
    x = np.zeros((n_steps * batch_size, 1), "float32")
    return x, x


def weight(model) -> float:
    return float(keras.ops.convert_to_numpy(model.layers[-1].w))


class WeightRecorder(keras.callbacks.Callback):
    """Records ``w`` after every batch hook (exact only at steps_per_execution=1)."""

    def __init__(self):
        super().__init__()
        self.ws = []

    def on_train_begin(self, logs=None):
        if not self.ws:
            self.ws.append(weight(self.model))

    def on_train_batch_end(self, batch, logs=None):
        self.ws.append(weight(self.model))

    def rates(self) -> np.ndarray:
        return -np.diff(np.asarray(self.ws, np.float64))
