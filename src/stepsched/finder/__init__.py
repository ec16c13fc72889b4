"""LR range test (``find_lr``) and its suggestions (``LRFinderResult``, pure NumPy)."""

from .._stats import ema
from .result import LRFinderResult
from .sweep import find_lr, sweep_schedule

__all__ = ["find_lr", "LRFinderResult", "sweep_schedule", "ema"]
