"""KerasHub: a small BERT classifier fine-tuned with warmup + cosine decay
(docs/guide/keras-hub.md, whose code runs here).

keras-hub needs the full ``tensorflow`` (through tensorflow-text), so it lives
in its own environment (the ``hub`` extra, see the guide); elsewhere this file
is skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.test_exactness import RTOL

pytest.importorskip(
    "keras_hub",
    reason="keras-hub is the optional 'hub' extra and needs the full tensorflow: install it "
           "in its own environment (docs/guide/keras-hub.md)")

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "keras-hub.md"


class BatchRates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(logs["learning_rate"])


def test_guide_fine_tunes_with_warmup_and_decay():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {"__name__": "guide"}
    exec(compile(blocks[0], str(GUIDE), "exec"), namespace)  # noqa: S102
    run, history = namespace["run"], namespace["history"]
    np.testing.assert_allclose(history.history["learning_rate"], run.at([7, 15, 23, 31]),
                               rtol=RTOL)
    assert history.history["loss"][-1] < history.history["loss"][0]

    # every batch: a second classifier with the same schedule object (a schedule is a value:
    # the first fit resolved its own copy), recorded batch by batch
    hub = namespace["keras_hub"]
    other = hub.models.BertTextClassifier(backbone=hub.models.BertBackbone.from_config(
        namespace["backbone"].get_config()), num_classes=2, preprocessor=None)
    other.compile(optimizer=keras.optimizers.AdamW(namespace["schedule"], weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    recorder = BatchRates()
    other.fit(namespace["x"], namespace["y"], batch_size=8, epochs=4, verbose=0,
              callbacks=[ss.callbacks.LearningRateLogger(), recorder])
    np.testing.assert_allclose(recorder.rates, run.at(range(32)), rtol=RTOL)
    assert int(other.optimizer.iterations) == 32
