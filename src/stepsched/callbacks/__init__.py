"""Callbacks: per-batch scheduling of Python functions, rate logging, plateau reduction."""

from .base import StepschedCallback
from .logger import LearningRateLogger
from .scheduler import BatchLearningRateScheduler

__all__ = ["StepschedCallback"]
__all__ += ["LearningRateLogger", "BatchLearningRateScheduler"]
from .plateau import ReduceLROnPlateau, Scaled  # noqa: E402

__all__ += ["ReduceLROnPlateau", "Scaled"]
