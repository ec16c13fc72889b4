"""Callbacks: per-batch scheduling of Python functions, rate logging, plateau reduction."""

from .base import Plan, StepschedCallback
from .cooldown import CooldownOnDemand
from .hyperparam import HyperparameterScheduler
from .logger import LearningRateLogger
from .plateau import ReduceLROnPlateau, Scaled
from .scheduler import BatchLearningRateScheduler

__all__ = [
    "StepschedCallback", "Plan", "LearningRateLogger", "BatchLearningRateScheduler",
    "ReduceLROnPlateau", "Scaled", "HyperparameterScheduler", "CooldownOnDemand",
]
