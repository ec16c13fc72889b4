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


def _optimizer_under_dynamo(make):
    """``make()``'s update of a small model's variables traced by torch.compile (dynamo
    only: graph breaks and recompilations are decided there, whatever the backend
    compiler): the graph breaks of the first trace, then the recompilations over three
    more steps (torch raises at one)."""
    import torch

    inputs = keras.Input((4,))
    body = keras.layers.Dense(3, name="body")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(body(inputs)))
    variables = model.trainable_variables
    optimizer = make()
    optimizer.build(variables)  # as fit() builds it, before its first (compiled) step
    grads = [keras.ops.full_like(v.value, 0.01) for v in variables]
    torch._dynamo.reset()
    breaks = torch._dynamo.explain(lambda g: optimizer.apply(g, variables))(grads)
    torch._dynamo.reset()
    step = torch.compile(lambda g: optimizer.apply(g, variables), backend="eager")
    step(grads)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(3):
            step(grads)
    torch._dynamo.reset()
    return breaks.graph_break_count, int(keras.ops.convert_to_numpy(optimizer.iterations))


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile graph breaks")
@pytest.mark.parametrize("name", ["AdamW", "RMSprop"])
def test_torch_compile_traces_a_stepsched_update_with_groups_in_one_graph(name):
    """A scheduled rate and hyperparameter, and groups (a multiplier schedule, a rate of
    their own, a frozen group): one graph from the first trace (what the optimizer makes
    once per schedule is made when it is built, not in the step), and no recompilation
    at the next steps."""
    hyper = {"AdamW": {"beta_1": ss.Linear(0.95, 0.85, 16)},
             "SGD": {"momentum": ss.Linear(0.9, 0.8, 16)},
             "RMSprop": {"rho": ss.Linear(0.9, 0.95, 16)}}[name]

    def make():
        return ss.optimizers.OPTIMIZERS[name](
            ss.WarmupCosine(0.01, 4, 16), **hyper,
            groups=[ss.optimizers.Group("body", pattern="body/*",
                                        multiplier=ss.Linear(0.0, 1.0, 8)),
                    ss.optimizers.Group("head", learning_rate=ss.Cosine(0.02, 0.0, 16),
                                        frozen_until=2)])

    assert _optimizer_under_dynamo(make) == (0, 5)


@pytest.mark.skipif(BACKEND != "torch", reason="jit_compile=True on torch is torch.compile")
@pytest.mark.parametrize("name", ["SGD", "RMSprop"])
def test_torch_compile_of_a_scheduled_momentum_from_zero_gives_the_eager_weights(name):
    """Keras's torch SGD and RMSprop test their momentum in Python (``!= 0``, ``> 0``);
    a scheduled momentum is a tensor there, and under ``torch.compile`` that test once
    crashed the compiled train step (``NameError: __subclass_Tensor_...``). Their update
    now runs outside the compiled graph: ``jit_compile=True`` gives the eager weights, with
    the momentum ramping from 0 and a group with a momentum of its own."""
    def run(jit):
        keras.utils.set_random_seed(2)
        inputs = keras.Input((4,))
        body = keras.layers.Dense(3, name="body")
        model = keras.Model(inputs, keras.layers.Dense(2, name="head")(body(inputs)))
        opt = ss.optimizers.OPTIMIZERS[name](
            ss.WarmupCosine(0.05, 2, 8), momentum=ss.Linear(0.0, 0.9, 4),
            groups=[ss.optimizers.Group("body", pattern="body/*",
                                        momentum=ss.Warmup(3) >> ss.Constant(0.5)),
                    ss.optimizers.Group("head")])
        model.compile(optimizer=opt, loss="mse", jit_compile=jit)
        x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
        model.fit(x, x[:, :2], batch_size=2, epochs=1, verbose=0, shuffle=False)
        return np.concatenate([w.ravel() for w in model.get_weights()])

    eager = run(False)
    np.testing.assert_allclose(run(True), eager, rtol=1e-5, atol=1e-6)


# ------------------------------------------------ stepsched.optimizers on torch
needs_torch = pytest.mark.skipif(BACKEND != "torch", reason="torch's fused updates, host reads")


def _optimizer_host_reads(make) -> int:
    """Host reads of three ``apply`` calls (after one to build) over a small model's
    variables."""
    inputs = keras.Input((4,))
    body = keras.layers.Dense(3, name="body")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(body(inputs)))
    variables = model.trainable_variables
    optimizer = make(body)
    grads = [keras.ops.full_like(v.value, 0.01) for v in variables]
    optimizer.apply(grads, variables)
    with workloads.SyncCounter() as counter:
        for _ in range(3):
            optimizer.apply(grads, variables)
    return counter.total


@needs_torch
@pytest.mark.parametrize("name", sorted(ss.optimizers.OPTIMIZERS))
def test_stepsched_optimizers_read_the_host_no_more_than_keras_s_own(name):
    """Every hyperparameter scheduled, the rate a schedule, two groups (one with a
    multiplier schedule and its own hyperparameter schedules): no more host reads per
    step than Keras's own optimizer with a float rate and float hyperparameters."""
    import inspect

    cls = ss.optimizers.OPTIMIZERS[name]
    base = cls._keras_class()
    params = inspect.signature(base).parameters
    floats = {h: (params[h].default if isinstance(params[h].default, float)
                  and params[h].default != 0 else 0.1) for h in cls.hyperparameter_names}
    schedules = {h: ss.Linear(v, v * 0.9, 100) for h, v in floats.items()}
    per_group = {} if name == "Nadam" else {  # Nadam keeps one momentum product
        h: ss.Linear(v, v * 0.8, 100) for h, v in floats.items() if h != "weight_decay"}

    def ours(body):
        return cls(ss.WarmupCosine(0.01, 10, 100), **schedules, groups=[
            ss.optimizers.Group("body", layers=[body], multiplier=ss.Linear(1.0, 0.1, 100),
                                **per_group), ss.optimizers.Group("rest")])

    keras_own = _optimizer_host_reads(lambda body: base(0.01, **floats))
    assert _optimizer_host_reads(ours) <= keras_own


@needs_torch
def test_torch_fused_and_per_variable_updates_agree(monkeypatch):
    """Groups with multiplier schedules, a frozen group and per-group weight decay: Keras's
    fused torch update (per group) and its per-variable update give the same weights and
    slots; a scheduled epsilon (a constant schedule: the same values) makes every group
    take the per-variable update, since the fused one would read it on the host."""
    from stepsched import _keras

    calls = {"fused": 0, "per_variable": 0}
    for kind, real in (("fused", _keras.fused_update),
                       ("per_variable", _keras.per_variable_update)):
        def spy(*args, _real=real, _kind=kind):
            calls[_kind] += 1
            return _real(*args)
        monkeypatch.setattr(_keras, f"{kind}_update", spy)

    def run(**extra):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((4,))
        body = keras.layers.Dense(3, name="body")
        model = keras.Model(inputs, keras.layers.Dense(1, name="head")(body(inputs)))
        opt = ss.optimizers.AdamW(ss.WarmupCosine(0.02, 4, 24), weight_decay=0.05, groups=[
            ss.optimizers.Group("body", layers=[body], multiplier=ss.Linear(0.0, 1.0, 8),
                                weight_decay=0.0),
            ss.optimizers.Group("head", frozen_until=6)], **extra)
        model.compile(optimizer=opt, loss="mse")
        rng = np.random.default_rng(0)
        x = rng.normal(size=(48, 4)).astype("float32")
        model.fit(x, x[:, :1] - x[:, 1:2], batch_size=4, verbose=0, shuffle=False)
        return [keras.ops.convert_to_numpy(v) for v in model.weights + opt.variables]

    fused = run()
    assert calls == {"fused": 24, "per_variable": 0}  # 12 steps, 2 groups
    per_variable = run(epsilon=ss.Constant(1e-7))
    assert calls == {"fused": 24, "per_variable": 24}
    for a, b in zip(fused, per_variable, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@needs_torch
def test_torch_sixteen_groups_run_few_more_operations_than_one():
    """torch: each group with a multiplier schedule of its own adds at most 6 torch
    operations to an update (one look-up of all the groups' tables, one product, one
    fused update and weight decay reading the rate vector; evaluated group by group,
    each added about 17), counted with the torch profiler."""
    from torch.profiler import profile

    def operations(k):
        keras.utils.set_random_seed(0)
        layers = [keras.layers.Dense(4, name=f"d{i}") for i in range(16)]
        inputs = keras.Input((4,))
        h = inputs
        for layer in layers:
            h = layer(h)
        keras.Model(inputs, h)
        variables = [v for layer in layers for v in layer.trainable_variables]
        share = 16 // k
        groups = [ss.optimizers.Group(f"g{i}", layers=layers[i * share:(i + 1) * share],
                                      multiplier=ss.Cosine(0.8 ** i, 0.08 * 0.8 ** i, 1000))
                  for i in range(k - 1)]
        groups.append(ss.optimizers.Group(f"g{k - 1}", multiplier=ss.Cosine(
            0.8 ** (k - 1), 0.08 * 0.8 ** (k - 1), 1000)))
        opt = ss.optimizers.AdamW(ss.WarmupCosine(1e-3, 100, 1000), weight_decay=0.004,
                                  groups=groups)
        opt.build(variables)
        grads = [keras.ops.ones_like(v) for v in variables]
        opt.apply(grads, variables)
        with profile() as prof:
            opt.apply(grads, variables)
        return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))

    one, sixteen = operations(1), operations(16)
    assert sixteen - one <= 6 * 15, (one, sixteen)


# ------------------------------------------------ host values read at every batch
@pytest.mark.parametrize("name", sorted(workloads.every_class()))
def test_value_at_gives_at_s_values_block_after_block(name):
    schedule = workloads.every_class()[name]
    block = ss.schedules.base.HOST_BLOCK
    # forward across block edges, back into the first block, far ahead, and back to 0
    steps = [*range(2 * block + 10), 3, 2, 10**7, 10**7 + block, 0]
    got = np.array([schedule.value_at(k) for k in steps], np.float32)
    want = np.array([schedule.at(k) for k in steps], np.float32)
    # one NumPy evaluation either way; a block is a longer array, which a CPU's vector
    # loop may round differently in the last float64 bit: at most 1 ulp in float32
    np.testing.assert_array_max_ulp(got, want, maxulp=1)


def test_value_at_follows_the_variables_a_schedule_reads():
    scaled = ss.callbacks.Scaled(ss.Linear(1.0, 0.5, 1000), multiplier=1.0)
    cooldown = ss.Cooldown(ss.Constant(1.0), duration=4, shape="linear")
    nested = ss.Warmup(10) >> ss.callbacks.Scaled(ss.Constant(1.0), multiplier=1.0)
    for schedule in (scaled, cooldown, nested):
        assert [schedule.value_at(k) for k in (20, 21)] == [float(schedule.at(k)) for k in (20, 21)]
    scaled.plateau.set(0.25)
    cooldown.state.set_start(10)
    nested.arg("pieces")[-1].plateau.set(0.5)
    for schedule, expected in ((scaled, 0.25 * float(ss.Linear(1.0, 0.5, 1000).at(22))),
                               (cooldown, 0.0), (nested, 0.5)):
        assert schedule.value_at(22) == float(schedule.at(22)) == pytest.approx(expected)


def test_per_batch_logger_evaluates_each_schedule_once_per_block(monkeypatch):
    n = 300  # batches: two blocks
    base = ss.Linear(1e-2, 1e-3, n)
    beta_1 = ss.Linear(0.9, 0.8, n)
    inputs = keras.Input((2,))
    body = keras.layers.Dense(2, name="body")
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(body(inputs)))
    optimizer = ss.optimizers.Adam(base, beta_1=beta_1, groups=[
        ss.optimizers.Group("body", layers=[body], multiplier=0.5), ss.optimizers.Group("rest")])
    model.compile(optimizer=optimizer, loss="mse")
    evaluations = []
    at = ss.Schedule.at
    monkeypatch.setattr(ss.Schedule, "at",
                        lambda self, steps: evaluations.append(np.size(steps)) or at(self, steps))

    class Seen(keras.callbacks.Callback):
        rows = []

        def on_train_batch_end(self, batch, logs=None):
            self.rows.append((logs["learning_rate"], logs["beta_1"], logs["learning_rate/body"]))

    x = np.zeros((n, 2), "float32")
    model.fit(x, x[:, :1], batch_size=1, epochs=1, verbose=0, shuffle=False,
              callbacks=[ss.callbacks.LearningRateLogger(), Seen()])
    rows = np.array(Seen.rows, np.float64)
    steps = np.arange(n)
    np.testing.assert_allclose(rows[:, 0], base.at(steps), rtol=1e-6)
    np.testing.assert_allclose(rows[:, 1], beta_1.at(steps), rtol=1e-6)
    np.testing.assert_allclose(rows[:, 2], 0.5 * base.at(steps), rtol=1e-6)
    per_batch = [k for k in evaluations if k != 1]  # blocks; single steps are one-offs
    assert len(evaluations) < 20, evaluations  # one per batch and schedule would be 600+
    assert len(per_batch) >= 4, evaluations


def test_per_batch_logger_does_nothing_per_batch_when_no_later_callback_reads_the_logs(
        monkeypatch):
    n = 8
    schedule = ss.Linear(1e-2, 1e-3, 2 * n)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    reads = []
    value_at = ss.Schedule.value_at
    monkeypatch.setattr(ss.Schedule, "value_at",
                        lambda self, step: reads.append(step) or value_at(self, step))

    class Before(keras.callbacks.Callback):  # sees the batch logs before the logger writes
        def on_train_batch_end(self, batch, logs=None):
            assert "learning_rate" not in logs

    x = np.zeros((n, 2), "float32")
    history = model.fit(x, x[:, :1], batch_size=1, epochs=2, verbose=0, shuffle=False,
                        callbacks=[Before(), ss.callbacks.LearningRateLogger()])
    assert reads == [n - 1, 2 * n - 1]  # the epoch ends only
    np.testing.assert_allclose(history.history["learning_rate"], schedule.at([n - 1, 2 * n - 1]),
                               rtol=1e-6)


def test_per_batch_logger_reads_a_float_rate_once_an_epoch_unless_a_callback_may_assign_it(
        monkeypatch):
    n = 6
    reads = []
    read = ss.callbacks.LearningRateLogger._read_float_rate
    monkeypatch.setattr(ss.callbacks.LearningRateLogger, "_read_float_rate",
                        lambda self: reads.append(1) or read(self))
    x = np.zeros((n, 2), "float32")

    class Record(keras.callbacks.Callback):
        def __init__(self, halve_at=None):
            super().__init__()
            self.halve_at, self.logged = halve_at, []

        def on_train_batch_end(self, batch, logs=None):
            self.logged.append(logs["learning_rate"])
            if batch == self.halve_at:
                self.model.optimizer.learning_rate.assign(
                    float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)) / 2)

    def fit(*callbacks):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        return model.fit(x, x[:, :1], batch_size=1, epochs=2, verbose=0, shuffle=False,
                         callbacks=[ss.callbacks.LearningRateLogger(), *callbacks])

    # a later callback that only reads (TerminateOnNaN has a batch hook): nothing per batch
    history = fit(keras.callbacks.TerminateOnNaN())
    assert reads == []
    np.testing.assert_allclose(history.history["learning_rate"], [0.1, 0.1], rtol=1e-6)
    # a callback that assigns the rate at a batch end: read per batch, exact from the next step
    record = Record(halve_at=2)
    history = fit(record)
    assert len(reads) >= 2 * n
    # halved at the third batch end of each epoch
    np.testing.assert_allclose(record.logged, [0.1] * 3 + [0.05] * n + [0.025] * (n - 3),
                               rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"], [0.05, 0.025], rtol=1e-6)
