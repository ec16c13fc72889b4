"""The outcome of an LR range test and the rates it suggests (pure NumPy).

Everything here works on plain arrays, so a result can be built from any
recorded sweep (``LRFinderResult(lrs, losses)``), inspected and plotted
without Keras.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate
from .._stats import ema

METHODS = ("steepest", "minimum/10", "valley")
STOP_REASONS = ("completed", "diverged", "nan", "data_exhausted")


def _numbers(name: str, values) -> np.ndarray:
    """A 1-D float64 array of real numbers (NaN/inf allowed), or an error naming ``name``."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    arr = np.asarray(values)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a sequence of real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64).reshape(-1)


class LRFinderResult:
    """Rates and losses recorded by :func:`stepsched.find_lr`.

    Attributes (NumPy arrays of equal length, one entry per optimizer step):

    - ``lrs``: the rate applied at each step;
    - ``losses``: the true loss of each batch (not Keras's running mean);
    - ``smoothed``: the bias-corrected EMA of ``losses`` (see
      :func:`stepsched._stats.ema`);
    - ``stopped_early``: True if the sweep ended before its last step;
    - ``stop_reason``: ``"completed"``, ``"diverged"`` (smoothed loss rose past
      the divergence threshold), ``"nan"`` (non-finite loss) or
      ``"data_exhausted"`` (the input could not be repeated and ran out).

    >>> import numpy as np
    >>> lrs = np.geomspace(1e-4, 1.0, 50)
    >>> losses = 1.0 / (1.0 + (lrs / 1e-2) ** 2) + (lrs > 0.3) * 10 * lrs
    >>> result = LRFinderResult(lrs, losses, smoothing=0.0)
    >>> 1e-3 < result.suggestion() < 3e-2
    True
    """

    def __init__(self, lrs, losses, smoothing: float = 0.98, stopped_early: bool = False,
                 stop_reason: str = "completed"):
        self.lrs = _numbers("lrs", lrs)
        self.losses = _numbers("losses", losses)
        if not np.all(np.isfinite(self.lrs) & (self.lrs > 0)):
            raise ValueError(f"lrs must be finite and > 0, got {self.lrs.tolist()!r}")
        if self.lrs.shape != self.losses.shape:
            raise ValueError(f"lrs and losses must have the same length, got {self.lrs.size} "
                             f"and {self.losses.size}")
        smoothing = _validate.number("smoothing", smoothing)
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.smoothing = smoothing
        self.smoothed = ema(self.losses, smoothing)
        self.stopped_early = _validate.boolean("stopped_early", stopped_early)
        self.stop_reason = _validate.choice("stop_reason", stop_reason, STOP_REASONS)

    def __len__(self) -> int:
        return int(self.lrs.size)

    def __repr__(self) -> str:
        if not len(self):
            return "LRFinderResult(empty)"
        return (f"LRFinderResult({len(self)} steps, lr {self.lrs[0]:.3g}..{self.lrs[-1]:.3g}, "
                f"stop_reason={self.stop_reason!r}, suggestion={self.suggestion():.3g})")

    # ------------------------------------------------------------ suggestions
    def _finite(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The leading part of the sweep where the losses are finite and lr > 0."""
        ok = np.isfinite(self.losses) & np.isfinite(self.smoothed) & (self.lrs > 0)
        n = len(ok) if ok.all() else int(np.argmin(ok))
        return self.lrs[:n], self.losses[:n], self.smoothed[:n]

    def suggestion(self, method: str = "steepest") -> float:
        r"""A learning rate read off the curve.

        - ``"steepest"``: where the smoothed loss falls fastest per unit of
          :math:`\log \eta` (``min d smoothed / d log lr``), guarded against the
          start of the sweep: candidates lie after the first 10 % of the points,
          before the minimum of the smoothed loss, and where the smoothed loss has
          already fallen *below the starting level* (the median of the raw losses
          of the first 10 %, robust to an odd first batch) by at least a tenth of
          the whole drop to the minimum. The smoothing lag after a high first
          batch makes the curve fall at the very start while it is still above
          that level, and noise around the level is smaller than the drop, so
          neither is picked. If no point qualifies, falls back to
          ``"minimum/10"``.
        - ``"minimum/10"``: a tenth of the rate at the minimum of the smoothed loss.
        - ``"valley"``: fastai's valley: the longest strictly descending run of
          the smoothed loss (longest decreasing subsequence), 2/3 of the way in.
        """
        method = _validate.choice("method", method, METHODS)
        lrs, losses, smoothed = self._finite()
        if lrs.size < 2:
            raise ValueError(f"need at least 2 finite points for a suggestion, got {lrs.size}")
        if method == "minimum/10":
            return float(lrs[int(np.argmin(smoothed))] / 10.0)
        if method == "valley":
            return float(lrs[_valley(smoothed)])
        index = _guarded_steepest(lrs, losses, smoothed)
        if index is None:
            return self.suggestion("minimum/10")
        return float(lrs[index])

    def plot(self, ax=None, method: str = "steepest", smoothed: bool = True, **kwargs):
        """Loss against learning rate (log x axis), the suggestion marked; returns the Axes.

        Draws the raw losses faintly and the smoothed curve on top. Never calls
        ``plt.show()``.
        """
        method = _validate.choice("method", method, METHODS)
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots()
        lrs, losses, smooth = self._finite()
        ax.plot(lrs, losses, alpha=0.3, label="loss")
        if smoothed:
            ax.plot(lrs, smooth, label="smoothed loss", **kwargs)
        if lrs.size >= 2:
            lr = self.suggestion(method)
            y = float(np.interp(math.log(lr), np.log(lrs), smooth))
            ax.plot([lr], [y], "o", color="red", label=f"{method}: {lr:.2e}")
            ax.axvline(lr, color="red", alpha=0.3, linestyle="--")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.legend()
        return ax


def _guarded_steepest(lrs: np.ndarray, losses: np.ndarray, smoothed: np.ndarray) -> int | None:
    n = lrs.size
    skip = max(1, n // 10)
    stop = int(np.argmin(smoothed))
    if stop <= skip:
        return None
    slope = np.gradient(smoothed, np.log(lrs))
    level = float(np.median(losses[: skip + 1]))
    drop = level - float(smoothed[stop])
    candidates = np.arange(skip, stop + 1)
    candidates = candidates[smoothed[candidates] < level - 0.1 * drop]
    if candidates.size == 0:
        return None
    return int(candidates[np.argmin(slope[candidates])])


def _valley(smoothed: np.ndarray) -> int:
    """fastai ``valley``: longest decreasing subsequence, 2/3 of the way along it."""
    n = smoothed.size
    lds = np.ones(n, dtype=np.int64)
    max_start, max_end = 0, 0
    for i in range(1, n):
        lower = smoothed[i] < smoothed[:i]
        if lower.any():
            lds[i] = max(lds[i], int(lds[:i][lower].max()) + 1)
        if lds[max_end] < lds[i]:
            max_end = i
            max_start = max_end - int(lds[max_end])
    sections = (max_end - max_start) / 3
    return int(min(max(max_start + int(sections) + int(sections / 2), 0), n - 1))
