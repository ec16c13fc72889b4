"""Figures of the tools: an LR range test against a schedule, and a plateau run.

The figures of a schedule itself (``plot_schedule``, ``plot_schedules``, ``key_points``,
``text_chart``) live beside the schedules, in ``stepsched/schedules/preview.py``, and
are importable from here too. matplotlib is imported only inside the drawing
functions; every function returns the Axes and never calls ``plt.show()``.
"""

from __future__ import annotations

import numpy as np

from . import _validate
from .schedules.base import Schedule
from .schedules.keys import key_steps
from .schedules.preview import (
    _COLORS,
    _draw,
    _epoch_axis,
    _grid,
    _legend,
    _log_floor,
    _new_axes,
    _step_formatter,
    _style_axes,
    concrete,
    key_points,
    plot_schedule,
    plot_schedules,
    text_chart,
)

__all__ = ["plot_schedule", "plot_schedules", "plot_lr_finder", "plot_reductions",
           "key_points", "key_steps", "text_chart", "concrete"]


# --------------------------------------------------------------- LR range test, plateau
def _finder_rates(result, method: str) -> dict:
    """The rates an LR range test found: suggestion, smoothed-loss minimum, divergence."""
    lrs = np.asarray(result.lrs, np.float64)
    smoothed = np.asarray(result.smoothed, np.float64)
    finite = np.isfinite(smoothed) & np.isfinite(np.asarray(result.losses, np.float64))
    n = len(finite) if finite.all() else int(np.argmin(finite))  # the leading finite part
    if n < 2:
        raise ValueError(f"the LR range test has {n} finite points; at least 2 are needed")
    rates = {"suggestion": float(result.suggestion(method)),
             "minimum": float(lrs[int(np.argmin(smoothed[:n]))])}
    if result.stop_reason in ("diverged", "nan"):
        rates["diverged"] = float(lrs[-1])
    return rates


def plot_lr_finder(result, schedule: Schedule | None = None, total_steps: float | None = None,
                   ax=None, steps_per_epoch: float | None = None, method: str = "steepest",
                   log: bool = True):
    """An LR range test (``find_lr``'s result) drawn against a schedule; returns the Axes.

    With ``schedule``: the schedule over steps ``0..total_steps`` (as
    :func:`plot_schedule` draws it) and, across it, the rates the test found:
    the suggestion (``result.suggestion(method)``), the rate at the minimum of
    the smoothed loss, and, when the test stopped because the loss diverged
    or turned NaN, a band over the rates from the one where it stopped: a
    schedule whose peak reaches into the band trains where the test blew up.

    Without ``schedule``: the test's own schedule, the rate of each of its
    steps, with the loss per step (faint) and its smoothed curve on a second
    y axis (``ax.right_ax``) and the suggestion's step marked.

    ``log=True`` puts the rates on a log scale.

    >>> import stepsched as ss
    >>> result = ss.find_lr(model, x, y)                                      # doctest: +SKIP
    >>> ax = plot_lr_finder(result, ss.WarmupCosine(result.suggestion(), 500, 5000))  # doctest: +SKIP
    """
    from .finder import LRFinderResult

    if not isinstance(result, LRFinderResult):
        raise TypeError(f"result must be an LRFinderResult (what find_lr returns), got {result!r}")
    rates = _finder_rates(result, method)
    ax = _new_axes(ax)
    if schedule is None:
        return _draw_sweep(ax, result, rates, method, log)
    total = _draw(ax, schedule, total_steps, steps_per_epoch, "schedule", _COLORS[0], True, log)
    _style_axes(ax, log)
    ax.set_xlim(0, total)
    top = max(ax.get_ylim()[1], rates["suggestion"] * 1.5)
    ax.axhline(rates["suggestion"], color=_COLORS[1], linestyle="--", linewidth=1.4,
               label=f"suggested {rates['suggestion']:.3g} ({method})")
    ax.axhline(rates["minimum"], color=_COLORS[3], linestyle=":", linewidth=1.4,
               label=f"loss minimum at {rates['minimum']:.3g}")
    if "diverged" in rates:
        top = max(top, rates["diverged"] * 2.0)
        ax.axhspan(rates["diverged"], top, color=_COLORS[1], alpha=0.12, linewidth=0,
                   label=f"loss diverged from {rates['diverged']:.3g}")
    lo = ax.get_ylim()[0]
    ax.set_ylim(lo, max(top, rates["minimum"] * 1.5))
    _epoch_axis(ax, steps_per_epoch)
    _legend(ax)
    return ax


def _draw_sweep(ax, result, rates, method, log):
    steps = np.arange(len(result.lrs))
    ax.plot(steps, result.lrs, color=_COLORS[0], linewidth=2.0, label="rate (the test's schedule)")
    ax.set_xlabel("step of the range test")
    ax.set_ylabel("learning rate")
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_formatter(_step_formatter())
    right = ax.twinx()
    right.plot(steps, result.losses, color=_COLORS[1], alpha=0.25, linewidth=0.8, label="loss")
    right.plot(steps, result.smoothed, color=_COLORS[1], linewidth=1.6, label="smoothed loss")
    right.set_ylabel("loss")
    finite = np.asarray(result.smoothed, np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size:  # a divergence at the end would squash the useful part
        lo, hi = float(finite.min()), float(finite[: max(1, finite.size // 10)].max())
        if hi > lo:
            right.set_ylim(lo - 0.15 * (hi - lo), hi + 0.6 * (hi - lo))
    at = int(np.searchsorted(np.asarray(result.lrs, np.float64), rates["suggestion"]))
    ax.axvline(min(at, len(steps) - 1), color=_COLORS[3], linestyle="--", linewidth=1.2,
               label=f"suggested {rates['suggestion']:.3g} ({method})")
    for side in ("top",):
        ax.spines[side].set_visible(False)
        right.spines[side].set_visible(False)
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlim(0, max(len(steps) - 1, 1))
    handles, labels = [], []
    for a in (ax, right):
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    ax.legend(handles, labels, frameon=True, framealpha=0.85, edgecolor="none", loc="best")
    ax.right_ax = right
    return ax


def _reduction_list(reductions) -> list[tuple[int, float]]:
    if isinstance(reductions, (str, bytes)) or not hasattr(reductions, "__iter__"):
        raise TypeError(f"reductions must be a ReduceLROnPlateau callback or a list of "
                        f"(step, multiplier) pairs, got {reductions!r}")
    out, last = [], -1.0
    for i, item in enumerate(reductions):
        try:
            step, multiplier = item
        except (TypeError, ValueError):
            raise TypeError(f"reductions[{i}] must be a (step, multiplier) pair, got "
                            f"{item!r}") from None
        step = _validate.number(f"reductions[{i}] step", step)
        multiplier = _validate.number(f"reductions[{i}] multiplier", multiplier,
                                      nonnegative=True)
        if step < last or step < 0:
            raise ValueError(f"reductions[{i}] step must be >= 0 and not before the previous "
                             f"one ({last:g}), got {step!r}")
        out.append((step, multiplier))
        last = step
    return out


def plot_reductions(schedule: Schedule | float, reductions, total_steps: float | None = None,
                    ax=None, steps_per_epoch: float | None = None, min_lr: float | None = None,
                    log: bool = False):
    """The rate a plateau run applied, drawn over its schedule, reductions marked; returns the Axes.

    ``schedule`` is the optimizer's rate before any reduction (a stepsched
    schedule or a float). ``reductions`` is a
    :class:`stepsched.callbacks.ReduceLROnPlateau` after ``fit`` or its
    ``reductions``: ``(step, multiplier)`` pairs, the multiplier in force from
    optimizer step ``step`` on (the step after the check that reduced it).
    ``min_lr`` defaults to the callback's (0 for a list).

    Draws the schedule as planned (dashed), the rate applied (solid:
    ``max(m * s(t), min(s(t), min_lr))`` with the multiplier ``m`` in force at
    ``t``, computed by the same :class:`stepsched.callbacks.Scaled` the
    optimizer evaluates) and, at each reduction, a marker labelled with the
    new multiplier.

    >>> cb = ss.callbacks.ReduceLROnPlateau(monitor="loss", every=100)        # doctest: +SKIP
    >>> model.fit(x, y, epochs=10, callbacks=[cb])                             # doctest: +SKIP
    >>> ax = plot_reductions(lr, cb, total_steps=10 * steps_per_epoch)         # doctest: +SKIP
    """
    from .callbacks.plateau import ReduceLROnPlateau, Scaled
    from .schedules.base import as_schedule

    if isinstance(reductions, ReduceLROnPlateau):
        if min_lr is None:
            min_lr = reductions.min_lr
        reductions = reductions.reductions
    points = _reduction_list(reductions)
    min_lr = _validate.number("min_lr", 0.0 if min_lr is None else min_lr, nonnegative=True)
    schedule = as_schedule(schedule, "schedule")
    resolved, total = concrete(schedule, total_steps, steps_per_epoch)
    edges = [s for s, _ in points if 0 < s <= total]
    joins = sorted({s for s, _ in key_steps(resolved, total) if 0 < s < total} | set(edges))
    steps = _grid(total, joins)
    planned = resolved.at(steps).astype(np.float64)
    applied = planned.copy()
    multipliers = [1.0] + [m for _, m in points]
    starts = [0.0] + [s for s, _ in points]
    for start, m in zip(starts, multipliers, strict=True):
        if m != 1.0 or min_lr:
            inside = steps >= start
            applied[inside] = Scaled(resolved, multiplier=m, min_lr=min_lr).at(steps[inside])
    ax = _new_axes(ax)
    shown_planned = np.maximum(planned, _log_floor(planned)) if log else planned
    shown_applied = np.maximum(applied, _log_floor(applied)) if log else applied
    ax.plot(steps, shown_planned, color="#888888", linestyle="--", linewidth=1.4,
            label="as scheduled")
    ax.plot(steps, shown_applied, color=_COLORS[0], linewidth=2.0,
            label="applied (plateau reductions)")
    marked = [(s, m) for s, m in points if s <= total]
    if marked:
        xs = [s for s, _ in marked]
        ys = np.interp(xs, steps, shown_applied)
        ax.plot(xs, ys, "v", color=_COLORS[1], markersize=7, zorder=4,
                label=f"{len(marked)} reduction{'s' * (len(marked) != 1)}")
        labelled = range(len(marked)) if len(marked) <= 8 else [0, 1, 2, len(marked) - 1]
        for j in labelled:  # the new multiplier (more than 8: the first three and the last)
            ax.annotate(f"x{marked[j][1]:.3g}", xy=(xs[j], ys[j]), xytext=(4, 6),
                        textcoords="offset points", fontsize=8, color=_COLORS[1])
    _style_axes(ax, log)
    ax.set_xlim(0, total)
    _epoch_axis(ax, steps_per_epoch)
    _legend(ax)
    return ax
