"""Every Python snippet of the README runs, in order, on a small model and data."""

from __future__ import annotations

import pathlib
import re

import keras
import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_readme_snippets_run():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 4
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    namespace = {"__name__": "readme", "model": model, "x": x, "y": y}
    for i, block in enumerate(blocks):
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
        if i == 0:  # the classic schedule: training did not change the object
            assert namespace["lr"].is_symbolic
    assert isinstance(namespace["result"].suggestion(), float)
