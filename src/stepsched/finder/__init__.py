"""LR range test (``find_lr``) and its suggestions (``LRFinderResult``, pure NumPy)."""

from .result import LRFinderResult, ema
from .sweep import find_lr, sweep_schedule

__all__ = ["find_lr", "LRFinderResult", "sweep_schedule", "ema"]
