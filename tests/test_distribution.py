"""Under data parallelism the schedule sees the global step, not a per-replica count.

Devices must be configured before the backend initialises, so each case runs
a small script in a fresh interpreter: two logical CPU devices with
``tf.distribute.MirroredStrategy`` on TensorFlow, two host devices with
``keras.distribution.DataParallel`` on JAX. The one-hot exact probe of
``tests/test_exactness.py`` is fed each row twice per global batch of 2, one
sample per replica; with the gradient averaged over the global batch, ``-w[k]``
is the rate applied at global step ``k``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BACKEND
from tests.test_exactness import RTOL, SCHEDULE

ROOT = Path(__file__).resolve().parents[1]
N = 12

COMMON = """
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests.test_exactness import SCHEDULE, applied, onehot_data, onehot_model

def run(spe):
    x, y = onehot_data({n})
    x, y = np.repeat(x, 2, axis=0), np.repeat(y, 2, axis=0)  # global batch = [e_k, e_k]
    model = build(spe)
    model.fit(x, y, batch_size=2, shuffle=False, epochs=1, verbose=0)
    return {{"rates": applied(model).tolist(),
             "iterations": int(np.asarray(model.optimizer.iterations))}}
"""

TF_SCRIPT = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

def build(spe):
    with strategy.scope():
        return onehot_model(SCHEDULE, {n}, steps_per_execution=spe)

# Only steps_per_execution=1: Keras 3.15's multi-step loop fails under
# MirroredStrategy ("You must feed a value for placeholder tensor") even for a
# plain model with a float rate.
print(json.dumps({{"replicas": strategy.num_replicas_in_sync,
                  "runs": {{spe: run(spe) for spe in (1,)}}}}))
"""

JAX_SCRIPT = """
import keras
devices = keras.distribution.list_devices("cpu")
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))

def build(spe):
    return onehot_model(SCHEDULE, {n}, steps_per_execution=spe)

# The kernel is replicated on both devices (the batch is split between them).
replicas = len(build(1).layers[-1].kernel.value.sharding.device_set)
print(json.dumps({{"replicas": replicas, "runs": {{spe: run(spe) for spe in (1, 4)}}}}))
"""


def run_script(body: str, env: dict) -> dict:
    code = textwrap.dedent(COMMON.format(root=str(ROOT), n=N)) + textwrap.dedent(
        body.format(n=N))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check(out: dict, spes: set[str]) -> None:
    assert out["replicas"] == 2
    assert set(out["runs"]) == spes
    for run in out["runs"].values():
        assert run["iterations"] == N  # one increment per global batch
        np.testing.assert_allclose(run["rates"], SCHEDULE.at(range(N)), rtol=RTOL)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute is TensorFlow only")
def test_mirrored_strategy_uses_the_global_step():
    check(run_script(TF_SCRIPT, {"KERAS_BACKEND": "tensorflow"}), {"1"})


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution.DataParallel runs on JAX")
def test_jax_data_parallel_uses_the_global_step():
    check(run_script(JAX_SCRIPT, {"KERAS_BACKEND": "jax",
                                  "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
          {"1", "4"})
