"""Per-step cost that grows with nothing: structural checks (no timing).

TensorFlow: the schedule is built once per traced step whatever the number of
variables (Keras evaluates the rate once more per variable for weight decay).
"""

from __future__ import annotations

import keras
import pytest

import stepsched as ss
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "tensorflow", reason="counts TensorFlow graph ops")


def _apply_ops(rate, n_vars: int) -> int:
    import tensorflow as tf

    optimizer = keras.optimizers.AdamW(rate, weight_decay=0.01)
    variables = [keras.Variable(tf.zeros((3,))) for _ in range(n_vars)]
    optimizer.build(variables)
    grads = [tf.ones((3,)) for _ in variables]
    graph = tf.function(lambda: optimizer.apply(grads, variables)).get_concrete_function().graph
    return len(graph.get_operations())


@pytest.mark.parametrize("schedule", [
    ss.WarmupCosine(1e-3, 1000, 10000),
    ss.Warmup(1000) >> ss.Exponential(1e-3, 0.96, every=1000),
    ss.Restarts(ss.Cosine(1e-3, 1e-5, 500), period_mult=1.0002),
], ids=["warmup-cosine", "seed", "restarts"])
def test_schedule_is_built_once_per_step_whatever_the_variables(schedule):
    per_variable_constant = (_apply_ops(1e-3, 41) - _apply_ops(1e-3, 1)) / 40
    per_variable = (_apply_ops(schedule, 41) - _apply_ops(schedule, 1)) / 40
    assert per_variable <= per_variable_constant, (per_variable, per_variable_constant)
