"""Callbacks: per-batch scheduling of Python functions, rate logging, plateau reduction."""

from .base import StepschedCallback

__all__ = ["StepschedCallback"]
