"""What stepsched checks about the distribution a model trains under.

One configuration is known not to train at all in Keras 3.15: a
``tf.distribute`` strategy with more than one replica in sync
(``MirroredStrategy`` over two devices, ``MultiWorkerMirroredStrategy`` over
two workers) together with ``steps_per_execution > 1``. Keras's multi-step
loop then fails at its first call with TensorFlow's ``InvalidArgumentError:
You must feed a value for placeholder tensor 'while/cond/Placeholder'``, a
message that names neither cause. It fails the same way with a plain float
rate and no stepsched in sight (``tests/test_multiworker.py`` pins that, so the
check goes when Keras fixes it); stepsched's callbacks refuse it when training
begins, with a message that says what to change.
"""

from __future__ import annotations

import keras

__all__ = ["check_strategy"]


def _replicas(model) -> int:
    """Replicas in sync of the ``tf.distribute`` strategy ``model`` trains under (1 if none)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    strategy = getattr(model, "distribute_strategy", None)
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)


def check_strategy(model) -> None:
    """Refuse, before Keras fails obscurely, a distribution Keras cannot train.

    Raises ``ValueError`` when ``model`` trains on TensorFlow under a
    ``tf.distribute`` strategy with more than one replica in sync and
    ``steps_per_execution > 1`` (Keras 3.15 fails there with "You must feed a
    value for placeholder tensor"). Anything else passes: one replica, any
    ``steps_per_execution`` on JAX's ``keras.distribution``, no strategy.
    """
    spe = getattr(model, "steps_per_execution", 1) or 1
    if spe <= 1:
        return
    replicas = _replicas(model)
    if replicas <= 1:
        return
    strategy = type(model.distribute_strategy).__name__
    raise ValueError(
        f"steps_per_execution={spe} under tf.distribute.{strategy} with {replicas} replicas in "
        f"sync does not train in Keras {keras.__version__}: its multi-step loop fails at the "
        "first step with TensorFlow's \"You must feed a value for placeholder tensor\" (with any "
        "learning rate, with or without stepsched). Compile with steps_per_execution=1: the "
        "schedule is evaluated by the optimizer at every step either way, so the rates are the "
        "same; or train with keras.distribution.DataParallel on JAX, where "
        "steps_per_execution > 1 works")
