"""Every optimizer hyperparameter per step, in-graph, and per group of variables.

``stepsched.optimizers.<Name>`` is ``keras.optimizers.<Name>`` (a subclass with the
same arguments and variables) whose float hyperparameters (``momentum``,
``beta_1``, ``beta_2``, ``weight_decay``, ...; ``HYPERPARAMETERS`` lists them per
optimizer) may be stepsched schedules, and which takes ``groups=``: variables
grouped by layer, name pattern or predicate, each group with its own rate or a
multiplier of the optimizer's rate, its own weight decay and hyperparameters.
``stepsched.optimizers.LossScaleOptimizer`` is Keras's, whose schedules may count the
batches seen rather than the updates made (``count="batches"``).
"""

from .core import HYPERPARAMETERS, OPTIMIZERS, ScheduledOptimizer, scheduled_values
from .groups import Group, layerwise, spread, unfreeze_at
from .loss_scale import LossScaleOptimizer

globals().update(OPTIMIZERS)

__all__ = ["Group", "spread", "layerwise", "unfreeze_at", "HYPERPARAMETERS", "OPTIMIZERS",
           "ScheduledOptimizer", "scheduled_values", "LossScaleOptimizer", *OPTIMIZERS]
