"""Previews of a schedule: matplotlib figures, its key points and a terminal chart.

``Schedule.plot()`` draws with these (``Previewable``, a base of every schedule);
``stepsched.plotting`` adds the figures of an LR range test and of a plateau run.
matplotlib is imported only inside the drawing functions, so ``import stepsched``
never imports it. Every function draws on the given Axes (or a new one), returns the
Axes and never calls ``plt.show()``. This module is below ``schedules/base.py``: it
reads a schedule through its methods (``resolve``, ``at``, ``key_steps``) and imports
no schedule class.

>>> import stepsched as ss
>>> lr = ss.Warmup(ss.epochs(2)) >> ss.Exponential(1e-3, rate=0.96, every=1000)
>>> ax = lr.plot(total_steps=20_000, steps_per_epoch=500)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import _validate
from .keys import key_steps

__all__ = ["Previewable", "plot_schedule", "plot_schedules", "key_points", "text_chart",
           "concrete"]

#: the most points drawn for one curve; longer runs are sampled evenly
MAX_POINTS = 20_000
_COLORS = ["#1f5fa8", "#d1495b", "#2a9d8f", "#e9a03b", "#6c4f9c", "#5c6770"]


class Previewable:
    """What every schedule can do to show itself (a base of ``Schedule``)."""

    def plot(self, total_steps: int | None = None, ax=None, steps_per_epoch: int | None = None,
             **kwargs):
        """Draw the schedule with matplotlib (``plot_schedule``); returns the Axes."""
        return plot_schedule(self, total_steps, ax=ax, steps_per_epoch=steps_per_epoch, **kwargs)


# --------------------------------------------------------------- resolution
def concrete(schedule, total_steps: float | None = None,
             steps_per_epoch: float | None = None) -> tuple:
    """``schedule`` with its durations resolved, and the number of steps to show.

    ``total_steps=None`` means the schedule's own duration, which must then be
    finite. Raises ``ValueError`` (``UnresolvedDurationError`` for missing
    ``steps_per_epoch``/``total_steps``) with a message naming the fix.
    """
    if not isinstance(schedule, Previewable):
        raise TypeError(f"schedule must be a stepsched Schedule, got {schedule!r}")
    if total_steps is not None:
        total_steps = _validate.number("total_steps", total_steps)
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
    if steps_per_epoch is not None:
        steps_per_epoch = _validate.number("steps_per_epoch", steps_per_epoch, positive=True)
    resolved = schedule.resolve(steps_per_epoch, total_steps) if schedule.is_symbolic else schedule
    if total_steps is None:
        duration = resolved.duration
        if duration is None:
            raise ValueError(f"{schedule!r} is open-ended: give total_steps, the number of "
                             "steps to show")
        total_steps = duration
    return resolved, max(int(math.ceil(total_steps)), 1)


def _grid(total_steps: int, boundaries: list[float] = ()) -> np.ndarray:
    """Integer steps 0..total_steps, sampled if long (boundaries kept sharp)."""
    if total_steps + 1 <= MAX_POINTS:
        return np.arange(total_steps + 1, dtype=np.float64)
    grid = np.unique(np.round(np.linspace(0, total_steps, MAX_POINTS)))
    edges = [b + d for b in boundaries if 0 < b <= total_steps for d in (-1.0, 0.0)]
    return np.unique(np.concatenate([grid, np.asarray(edges, np.float64)]))


# --------------------------------------------------------------- key points
@dataclass(frozen=True)
class KeyPoint:
    """A labelled point of a schedule: ``label``, ``step`` and ``value``."""

    label: str
    step: float
    value: float


def key_points(schedule, total_steps: float | None = None,
               steps_per_epoch: float | None = None, max_joins: int = 12) -> list[KeyPoint]:
    """Start, peak, end and the joins between pieces, over ``0..total_steps``.

    >>> import stepsched as ss
    >>> [(p.label, p.step) for p in key_points(ss.Warmup(10) >> ss.Linear(1.0, 0.0, 90))]
    [('start', 0.0), ('join: Warmup -> Linear', 10.0), ('peak', 10.0), ('end', 100.0)]
    """
    resolved, total = concrete(schedule, total_steps, steps_per_epoch)
    joins = sorted({(s, label) for s, label in key_steps(resolved, total) if 0 < s < total})
    steps = _grid(total, [s for s, _ in joins])
    values = resolved.at(steps)
    peak = int(np.argmax(values))
    points = [KeyPoint("start", 0.0, float(values[0]))]
    shown = joins[:max_joins]
    for s, label in shown:
        points.append(KeyPoint(f"join: {label}" if "->" in label else label, float(s),
                               float(resolved.at(s))))
    if len(joins) > len(shown):
        points.append(KeyPoint(f"... {len(joins) - len(shown)} more joins", math.nan, math.nan))
    if 0 < peak < len(steps) - 1:
        points.append(KeyPoint("peak", float(steps[peak]), float(values[peak])))
    points.append(KeyPoint("end", float(steps[-1]), float(values[-1])))
    group = {"start": 0, "end": 2}
    return sorted(points, key=lambda p: (group.get(p.label, 1),
                                         math.inf if math.isnan(p.step) else p.step,
                                         p.label == "peak"))


# --------------------------------------------------------------- matplotlib
def _style_axes(ax, log: bool) -> None:
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    if log:
        ax.set_yscale("log")
        lo, hi = ax.dataLim.y0, ax.dataLim.y1
        if 0 < lo <= hi:
            ax.set_ylim(lo / 1.5, hi * 2.0)
    else:
        from matplotlib.ticker import FuncFormatter

        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        lo, hi = min(0.0, ax.dataLim.y0), max(0.0, ax.dataLim.y1)
        pad = 0.1 * (hi - lo) or 1.0
        ax.set_ylim(lo - (pad if lo < 0 else 0.0), hi + pad)
    ax.xaxis.set_major_formatter(_step_formatter())


def _step_formatter():
    from matplotlib.ticker import FuncFormatter

    def fmt(v, _):
        return f"{v:,.0f}" if v == int(v) else f"{v:,.1f}"

    return FuncFormatter(fmt)


def _epoch_axis(ax, steps_per_epoch: float | None):
    if not steps_per_epoch:
        return None
    spe = float(steps_per_epoch)
    sec = ax.secondary_xaxis("top", functions=(lambda s: s / spe, lambda e: e * spe))
    sec.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    sec.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    ax.spines["top"].set_visible(True)
    ax.spines["top"].set_color("#bbbbbb")
    return sec


def _legend(ax) -> None:
    ax.legend(frameon=True, framealpha=0.85, edgecolor="none", facecolor="white", loc="best")


def _new_axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(7.5, 3.8), layout="constrained")
    return ax


def _draw(ax, schedule, total_steps, steps_per_epoch, label, color, annotate: bool, log: bool,
          **line_kwargs):
    resolved, total = concrete(schedule, total_steps, steps_per_epoch)
    join_steps = sorted({s for s, _ in key_steps(resolved, total) if 0 < s < total})
    steps = _grid(total, join_steps)
    values = resolved.at(steps)
    if log and np.any(values <= 0):
        positive = values[values > 0]
        floor = float(positive.min()) if positive.size else 1e-12
        values = np.maximum(values, floor)
    line_kwargs.setdefault("linewidth", 2.0)
    (line,) = ax.plot(steps, values, label=label, color=color, **line_kwargs)
    peak = int(np.argmax(values))
    ax.plot([steps[peak]], [values[peak]], "o", color=line.get_color(), markersize=5, zorder=3)
    if annotate:
        if len(join_steps) <= 40:
            for s in join_steps:
                ax.axvline(s, color="#999999", linestyle=":", linewidth=1.0, zorder=1)
        right = steps[peak] > 0.7 * total
        ax.annotate(f"peak {values[peak]:.3g} at step {steps[peak]:,.0f}",
                    xy=(steps[peak], values[peak]), xytext=(-6 if right else 6, 5),
                    textcoords="offset points", va="bottom", ha="right" if right else "left",
                    fontsize=8, color=line.get_color())
    return total


def plot_schedule(schedule, total_steps: float | None = None, ax=None,
                  steps_per_epoch: float | None = None, log: bool = False,
                  label: str | None = None, **line_kwargs):
    """Draw ``schedule`` over steps ``0..total_steps``; returns the matplotlib Axes.

    ``total_steps=None`` uses the schedule's own duration (it must be finite).
    ``epochs(...)``/``fraction(...)`` durations are resolved with
    ``steps_per_epoch`` and ``total_steps``; with ``steps_per_epoch`` an epoch
    axis is added on top. The peak is marked and the joins between pieces are
    drawn as dotted lines. ``log=True`` uses a log scale for the rate. Extra
    keyword arguments go to ``Axes.plot``.

    >>> import stepsched as ss
    >>> ax = plot_schedule(ss.Warmup(100) >> ss.Cosine(1e-3, 1e-5, 900))  # doctest: +SKIP
    """
    ax = _new_axes(ax)
    color = line_kwargs.pop("color", _COLORS[0])
    total = _draw(ax, schedule, total_steps, steps_per_epoch, label, color, True, log,
                  **line_kwargs)
    _style_axes(ax, log)
    ax.set_xlim(0, total)
    _epoch_axis(ax, steps_per_epoch)
    if label is not None:
        _legend(ax)
    return ax


def plot_schedules(schedules: Mapping, total_steps: float | None = None, ax=None,
                   steps_per_epoch: float | None = None, log: bool = False):
    """Draw several schedules on one Axes with a legend; returns the Axes.

    ``schedules`` maps a legend label to a schedule. ``total_steps=None`` uses
    the longest finite duration among them.

    >>> import stepsched as ss
    >>> ax = plot_schedules({"cosine": ss.Cosine(1.0, 0.0, 100),
    ...                      "linear": ss.Linear(1.0, 0.0, 100)})  # doctest: +SKIP
    """
    if not isinstance(schedules, Mapping) or not schedules:
        raise TypeError(f"schedules must be a non-empty mapping of label -> schedule, "
                        f"got {schedules!r}")
    if total_steps is None:
        lengths = [concrete(s, None, steps_per_epoch)[1] for s in schedules.values()
                   if s.is_finite]
        if not lengths:
            raise ValueError("every schedule is open-ended: give total_steps, the number of "
                             "steps to show")
        total_steps = max(lengths)
    ax = _new_axes(ax)
    total = 0
    for i, (name, schedule) in enumerate(schedules.items()):
        total = _draw(ax, schedule, total_steps, steps_per_epoch, str(name),
                      _COLORS[i % len(_COLORS)], False, log)
    _style_axes(ax, log)
    ax.set_xlim(0, total)
    _epoch_axis(ax, steps_per_epoch)
    _legend(ax)
    return ax



def _log_floor(values: np.ndarray) -> float:
    positive = values[values > 0]
    return float(positive.min()) if positive.size else 1e-12


# --------------------------------------------------------------- terminal
_BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][col]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def text_chart(schedule, total_steps: float | None = None,
               steps_per_epoch: float | None = None, width: int = 60, height: int = 12,
               unicode: bool = True) -> str:
    """A small terminal chart of the schedule (Braille dots, or ``*`` if not ``unicode``).

    ``width`` and ``height`` are the size of the plotting area in characters;
    the y labels add about 10 columns.
    """
    resolved, total = concrete(schedule, total_steps, steps_per_epoch)
    width, height = max(int(width), 10), max(int(height), 3)
    xdots, ydots = (width * 2, height * 4) if unicode else (width, height)
    steps = np.linspace(0.0, float(total), max(xdots * 8, 2))
    steps = np.unique(np.round(steps))
    values = resolved.at(steps).astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12 * max(abs(hi), 1e-30):
        lo, hi = (lo - 1.0, hi + 1.0) if hi == 0 else (lo - abs(lo) * 0.1, hi + abs(hi) * 0.1)
    cols = np.minimum((steps / total * (xdots - 1)).round().astype(int), xdots - 1)
    rows = ((hi - values) / (hi - lo) * (ydots - 1)).round().astype(int)
    lit = np.zeros((ydots, xdots), dtype=bool)
    prev = None
    for c, r in zip(cols, rows, strict=True):
        if prev is not None and prev[0] in (c, c - 1):  # join vertical jumps
            a, b = sorted((prev[1], r))
            lit[a:b + 1, c] = True
        lit[r, c] = True
        prev = (c, r)
    lines = []
    for y in range(height):
        if unicode:
            chars = []
            for x in range(width):
                code = 0
                for dy in range(4):
                    for dx in range(2):
                        if lit[y * 4 + dy, x * 2 + dx]:
                            code |= _BRAILLE_BITS[dy][dx]
                chars.append(chr(0x2800 + code) if code else " ")
            body = "".join(chars)
        else:
            body = "".join("*" if v else " " for v in lit[y])
        label = _fmt(hi) if y == 0 else _fmt(lo) if y == height - 1 else ""
        if y == height // 2:
            label = _fmt((hi + lo) / 2)
        lines.append(f"{label:>9} {'┤' if unicode else '|'}{body}")
    axis = ("└" if unicode else "+") + ("─" if unicode else "-") * width
    lines.append(" " * 10 + axis)
    left, mid, right = "0", f"{total / 2:,.0f}", f"{total:,.0f}"
    ticks = left + mid.center(width - len(left) - len(right)) + right
    lines.append(" " * 11 + ticks + "  step")
    if steps_per_epoch:
        epochs = f"= {total / float(steps_per_epoch):.3g} epochs of {steps_per_epoch:g} steps"
        lines.append(" " * 11 + epochs.rjust(width))
    return "\n".join(lines)
