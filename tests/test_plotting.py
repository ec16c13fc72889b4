"""Plotting: figures (Agg), key points and the terminal chart."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import stepsched as ss  # noqa: E402
from stepsched.plotting import MAX_POINTS, key_points, text_chart  # noqa: E402

CLASSIC = ss.Warmup(ss.epochs(2)) >> ss.Exponential(1e-3, rate=0.96, every=1000)


def new_axes():
    fig = Figure(figsize=(6, 3))
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def curve(ax, index=0):
    line = ax.get_lines()[index]
    return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)


def epoch_axes(ax):
    return [c for c in ax.child_axes if c.get_xlabel() == "epoch"]


# ----------------------------------------------------------------- import
def test_import_does_not_need_matplotlib():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import stepsched, stepsched.plotting, stepsched.cli, stepsched.spec\n"
            "print(stepsched.plot_schedule.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "plot_schedule"


# ----------------------------------------------------------------- plot_schedule
def test_plot_writes_png_with_labels_and_the_schedule_values(tmp_path):
    ax = new_axes()
    returned = ss.plot_schedule(CLASSIC, 5000, ax=ax, steps_per_epoch=100)
    assert returned is ax
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "learning rate"
    x, y = curve(ax)
    assert x[0] == 0 and x[-1] == 5000
    np.testing.assert_allclose(y, CLASSIC.resolve(steps_per_epoch=100).at(x), rtol=1e-6)
    assert ax.get_xlim() == (0.0, 5000.0)
    path = tmp_path / "classic.png"
    ax.figure.savefig(path, dpi=60)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_epoch_axis_on_top_when_steps_per_epoch_given():
    ax = new_axes()
    ss.plot_schedule(CLASSIC, 5000, ax=ax, steps_per_epoch=250)
    (sec,) = epoch_axes(ax)
    ax.figure.canvas.draw()
    # the secondary axis maps steps to epochs: 5000 steps = 20 epochs
    np.testing.assert_allclose(sec.get_xlim(), (0.0, 20.0))
    ticks = [t for t in sec.get_xticks() if 0 <= t <= 20]
    assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks)

    plain = new_axes()
    ss.plot_schedule(ss.Linear(1.0, 0.0, 100), ax=plain)
    assert epoch_axes(plain) == []


def test_log_scale_and_peak_marker():
    ax = new_axes()
    s = ss.Warmup(100, start=1e-5) >> ss.Cosine(1e-2, 1e-5, 900)
    ss.plot_schedule(s, ax=ax, log=True)
    assert ax.get_yscale() == "log"
    x, y = curve(ax)
    assert x[-1] == 1000  # the schedule's own duration
    peak_x, peak_y = curve(ax, 1)
    assert peak_x[0] == 100 and peak_y[0] == pytest.approx(1e-2, rel=1e-6)
    # the join between warmup and cosine is drawn
    assert any(np.allclose(line.get_xdata(), [100, 100]) for line in ax.get_lines()[2:])


def test_log_scale_survives_zero_values():
    ax = new_axes()
    ss.plot_schedule(ss.Linear(1.0, 0.0, 100), ax=ax, log=True)
    _, y = curve(ax)
    assert np.all(y > 0)


def test_symbolic_durations_resolve_or_fail_clearly():
    s = ss.WarmupCosine(peak=1.0, warmup=ss.fraction(0.1), total=ss.fraction(1.0))
    ax = ss.plot_schedule(s, 2000, ax=new_axes())
    x, y = curve(ax)
    assert x[int(np.argmax(y))] == 200
    with pytest.raises(ss.UnresolvedDurationError, match="steps_per_epoch"):
        ss.plot_schedule(CLASSIC, 5000, ax=new_axes())
    with pytest.raises(ValueError, match="open-ended"):
        ss.plot_schedule(ss.Exponential(1.0, 0.9), ax=new_axes())
    with pytest.raises(ValueError, match="total_steps"):
        ss.plot_schedule(ss.Constant(1.0), -5, ax=new_axes())


def test_schedule_plot_method_and_default_axes():
    import matplotlib.pyplot as plt

    ax = CLASSIC.plot(3000, steps_per_epoch=100, label="classic")
    try:
        assert ax.get_legend().get_texts()[0].get_text() == "classic"
        assert len(epoch_axes(ax)) == 1
    finally:
        plt.close(ax.figure)


def test_long_runs_are_sampled_but_boundaries_stay_sharp():
    s = ss.Piecewise([3_000_001], [1.0, 0.1], duration=10_000_000)
    ax = ss.plot_schedule(s, ax=new_axes())
    x, y = curve(ax)
    assert len(x) <= MAX_POINTS + 2
    assert 3_000_000 in x and 3_000_001 in x
    np.testing.assert_allclose(y, s.at(x))


# ----------------------------------------------------------------- plot_schedules
def test_plot_schedules_side_by_side_with_legend(tmp_path):
    schedules = {"cosine": ss.Cosine(1.0, 0.0, 800),
                 "one-cycle": ss.OneCycle(max_lr=1.0, total_steps=1000),
                 "per-epoch": ss.Piecewise([ss.epochs(1), ss.epochs(2)], [1.0, 0.5, 0.1])}
    ax = ss.plot_schedules(schedules, ax=new_axes(), steps_per_epoch=300, log=True)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == list(schedules)
    assert ax.get_yscale() == "log"
    assert len(epoch_axes(ax)) == 1
    lines = [ln for ln in ax.get_lines() if ln.get_label() in schedules]
    assert [ln.get_xdata()[-1] for ln in lines] == [1000] * 3  # the longest finite one
    ax.figure.savefig(tmp_path / "three.png", dpi=50)
    assert (tmp_path / "three.png").stat().st_size > 1000
    with pytest.raises(TypeError, match="mapping"):
        ss.plot_schedules([ss.Constant(1.0)], 10)
    with pytest.raises(ValueError, match="open-ended"):
        ss.plot_schedules({"a": ss.Constant(1.0)})


# ----------------------------------------------------------------- key points, text
def test_key_points_of_a_sequence():
    s = ss.Warmup(100) >> ss.Constant(2.0, 400) >> ss.Cosine(2.0, 0.5, 500)
    points = key_points(s)
    got = [(p.label, p.step, round(p.value, 6)) for p in points]
    assert got == [("start", 0.0, 0.0),
                   ("join: Warmup -> Constant", 100.0, 2.0),
                   ("peak", 100.0, 2.0),
                   ("join: Constant -> Cosine", 500.0, 2.0),
                   ("end", 1000.0, 0.5)]
    for p in points:
        assert p.value == pytest.approx(float(s.at(p.step)))


def test_key_points_of_restarts_and_piecewise():
    restarts = [p.step for p in key_points(ss.Restarts(ss.Linear(1.0, 0.0, 100), limit=3))
                if p.label == "restart"]
    assert restarts == [100.0, 200.0]
    boundaries = [p.step for p in key_points(ss.Piecewise([10, 20], [3.0, 2.0, 1.0]), 30)
                  if p.label == "boundary"]
    assert boundaries == [10.0, 20.0]


def test_text_chart_shape_and_extremes():
    s = ss.Warmup(25) >> ss.Linear(1.0, 0.0, 75)
    text = text_chart(s, width=40, height=8, unicode=False)
    lines = text.splitlines()
    assert len(lines) == 8 + 2
    body = [ln.split("|", 1)[1] for ln in lines[:8]]
    assert all(len(b) == 40 for b in body)
    top, bottom = body[0], body[-1]
    # the peak (step 25 of 100) is on the top row near a quarter of the width
    assert abs(top.index("*") - 0.25 * 39) <= 2
    assert bottom[0] == "*" and bottom[-1] == "*"  # starts and ends at 0
    assert lines[0].split("|")[0].strip() == "1" and lines[7].split("|")[0].strip() == "0"
    assert set(text) <= set(" *|+-0123456789.,e:stp=\n")
    braille = text_chart(s, width=40, height=8)
    assert any(0x2800 <= ord(c) <= 0x28FF for c in braille)
