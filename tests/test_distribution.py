"""Under data parallelism the schedule sees the global step, not a per-replica count.

Devices must be configured before the backend initialises, so the probes run
in a fresh interpreter (one for both, read by both tests): two logical CPU devices with
``tf.distribute.MirroredStrategy`` on TensorFlow, two host devices with
``keras.distribution.DataParallel`` on JAX.

Two probes. The one-hot exact probe of ``tests/test_exactness.py`` is fed each
row twice per global batch of 2, one sample per replica; with the gradient
averaged over the global batch, ``-w[k]`` is the rate applied at global step
``k``. The momentum probe has two one-entry kernels in two variable groups on an
input of ones with loss = mean output (``tests/probe.py``), so every gradient is 1 on every replica
and with SGD each kernel follows ``v_t = m_t v_(t-1) - r_t``, ``w_t = w_(t-1) + v_t``:
``m_t`` is the momentum schedule and ``r_t`` the group's rate, both at global step
``t``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import stepsched as ss
from tests.conftest import BACKEND
from tests.test_exactness import RTOL, SCHEDULE

ROOT = Path(__file__).resolve().parents[1]
N = 12
MOMENTUM = f"ss.Linear(0.9, 0.5, {N})"
RATE = f"ss.Linear(0.1, 0.02, {N})"
MULTIPLIER = 0.5  # group "a"; group "b" takes the base rate

PRELUDE = f"""
import json, sys
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
N = {N}
"""

TF_SETUP = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
scope = strategy.scope

def replicas(model):
    return strategy.num_replicas_in_sync

# Only steps_per_execution=1: Keras 3.15's multi-step loop fails under
# MirroredStrategy ("You must feed a value for placeholder tensor") even for a
# plain model with a float rate.
SPES = (1,)
"""

JAX_SETUP = """
import contextlib
import keras
devices = keras.distribution.list_devices("cpu")
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
scope = contextlib.nullcontext

def replicas(model):  # the kernel is replicated on both devices (the batch is split)
    return len(model.trainable_variables[0].value.sharding.device_set)

SPES = (1, 4)
"""

ONEHOT_PROBE = f"""
from tests.test_exactness import SCHEDULE, applied, onehot_data, onehot_model

def build(spe):
    return onehot_model(SCHEDULE, {N}, steps_per_execution=spe)

def run(spe):
    x, y = onehot_data({N})
    x, y = np.repeat(x, 2, axis=0), np.repeat(y, 2, axis=0)  # global batch = [e_k, e_k]
    with scope():
        model = build(spe)
    model.fit(x, y, batch_size=2, shuffle=False, epochs=1, verbose=0)
    return {{"rates": applied(model).tolist(), "replicas": replicas(model),
             "iterations": int(np.asarray(model.optimizer.iterations))}}
"""

MOMENTUM_PROBE = f"""
import keras
import stepsched as ss
import stepsched.optimizers as so
from tests.probe import mean_output

def build(spe):
    inputs = keras.Input((1,))
    a = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="a")
    b = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="b")
    model = keras.Model(inputs, keras.layers.Add()([a(inputs), b(inputs)]))
    opt = so.SGD({RATE}, momentum={MOMENTUM}, groups=[
        so.Group("a", pattern="a/*", multiplier={MULTIPLIER}), so.Group("b")])
    model.compile(optimizer=opt, loss=mean_output, steps_per_execution=spe)
    return model

def run(spe):
    with scope():
        model = build(spe)
    seen = []
    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append([int(np.asarray(self.model.optimizer.iterations))]
                        + [float(np.asarray(w)[0, 0]) for w in self.model.get_weights()])
    x = np.ones((2 * {N}, 1), "float32")  # global batch of 2: one row per replica
    model.fit(x, x, batch_size=2, shuffle=False, epochs=1, verbose=0, callbacks=[Record()])
    return {{"seen": seen, "replicas": replicas(model),
             "iterations": int(np.asarray(model.optimizer.iterations))}}
"""

PROBES = {"onehot": ONEHOT_PROBE, "momentum": MOMENTUM_PROBE}

ENV = {"tensorflow": {"KERAS_BACKEND": "tensorflow"},
       "jax": {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}}
SETUP = {"tensorflow": TF_SETUP, "jax": JAX_SETUP}
distributed = pytest.mark.skipif(
    BACKEND not in SETUP, reason="tf.distribute (TensorFlow) or keras.distribution (JAX)")


@functools.cache
def _runs(*probes: str) -> tuple[dict, ...]:
    """The runs of each probe (steps_per_execution -> run), the probes one after the other
    in one fresh interpreter (each defines its own ``build`` and ``run``)."""
    parts = [PRELUDE, SETUP[BACKEND], "OUT = []\n"]
    for probe in probes:
        parts += [probe, "OUT.append({str(spe): run(spe) for spe in SPES})\n"]
    code = "".join(textwrap.dedent(part) for part in (*parts, "print(json.dumps(OUT))\n"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **ENV[BACKEND]},
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return tuple(json.loads(result.stdout.strip().splitlines()[-1]))


def run_script(probe: str) -> dict:
    """The runs of ``probe``: a name in PROBES (this module's probes share one interpreter,
    read by both tests) or a probe's code (an interpreter of its own)."""
    if probe in PROBES:
        runs = _runs(*PROBES.values())[list(PROBES).index(probe)]
    else:
        runs = _runs(probe)[0]
    runs = copy.deepcopy(runs)
    assert set(runs) == {"tensorflow": {"1"}, "jax": {"1", "4"}}[BACKEND]
    for run in runs.values():
        assert run["replicas"] == 2
        assert run["iterations"] == N  # one increment per global batch
    return runs


@distributed
def test_data_parallel_rate_uses_the_global_step():
    for run in run_script("onehot").values():
        np.testing.assert_allclose(run["rates"], SCHEDULE.at(range(N)), rtol=RTOL)


def momentum_probe_weights() -> np.ndarray:
    """The probe's kernels after each step, in float64: shape (step, kernel)."""
    momentum = eval(MOMENTUM, {"ss": ss}).at(range(N))
    rate = eval(RATE, {"ss": ss}).at(range(N))
    paths = []
    for scale in (MULTIPLIER, 1.0):
        v = w = 0.0
        path = []
        for m, r in zip(momentum, rate, strict=True):
            v = m * v - r * scale
            w += v
            path.append(w)
        paths.append(path)
    return np.asarray(paths).T


@distributed
def test_data_parallel_hyperparameter_and_group_schedules_use_the_global_step():
    want = momentum_probe_weights()
    for spe, run in run_script("momentum").items():
        seen = np.asarray(run["seen"])
        steps = seen[:, 0].astype(int)
        np.testing.assert_array_equal(steps, np.arange(int(spe), N + 1, int(spe)))
        np.testing.assert_allclose(seen[:, 1:], want[steps - 1], rtol=1e-5)
