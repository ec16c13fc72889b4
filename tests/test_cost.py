"""Per-step cost that grows with nothing: structural checks (no timing).

TensorFlow: the schedule is built once per traced step whatever the number of
variables (Keras evaluates the rate once more per variable for weight decay).
torch: under ``jit_compile=True`` (``torch.compile``) an evaluation compiles to
one graph, with no graph break, for every schedule class.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.conftest import BACKEND

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import workloads  # noqa: E402

needs_tf = pytest.mark.skipif(BACKEND != "tensorflow", reason="counts TensorFlow graph ops")


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
@needs_tf
def test_schedule_is_built_once_per_step_whatever_the_variables(schedule):
    per_variable_constant = (_apply_ops(1e-3, 41) - _apply_ops(1e-3, 1)) / 40
    per_variable = (_apply_ops(schedule, 41) - _apply_ops(schedule, 1)) / 40
    assert per_variable <= per_variable_constant, (per_variable, per_variable_constant)


def _graph_breaks(schedule) -> int:
    import torch

    optimizer = keras.optimizers.AdamW(1e-3)
    optimizer.build([keras.Variable(np.zeros((1,), "float32"))])
    optimizer.iterations.assign(37)
    step = optimizer.iterations.value
    schedule(step)  # what is derived once per schedule (tables, constants) is made here
    torch._dynamo.reset()
    return torch._dynamo.explain(lambda s: schedule(s))(step).graph_break_count


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile graph breaks")
@pytest.mark.parametrize("name", sorted(workloads.every_class()))
def test_torch_compile_sees_no_graph_break(name):
    assert _graph_breaks(workloads.every_class()[name]) == 0


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile graph breaks")
def test_keras_cosine_decay_breaks_where_stepsched_does_not():
    # the comparison the count stands for: Keras's own counterpart breaks the graph
    keras_cosine = keras.optimizers.schedules.CosineDecay(0.0, 900, warmup_target=1e-3,
                                                          warmup_steps=100)
    assert _graph_breaks(keras_cosine) > _graph_breaks(ss.WarmupCosine(1e-3, 100, 1000)) == 0
