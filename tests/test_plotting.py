"""Plotting: figures (Agg), key points and the terminal chart."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import stepsched as ss  # noqa: E402
from stepsched.plotting import key_points, key_steps, text_chart  # noqa: E402
from stepsched.schedules.base import Recipe, Schedule  # noqa: E402
from stepsched.schedules.planned import Planned  # noqa: E402
from stepsched.schedules.preview import MAX_POINTS  # noqa: E402

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
@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
def test_log_scale_survives_zero_values():
    ax = new_axes()
    ss.plot_schedule(ss.Linear(1.0, 0.0, 100), ax=ax, log=True)
    _, y = curve(ax)
    assert np.all(y > 0)


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
def test_schedule_plot_method_and_default_axes():
    import matplotlib.pyplot as plt

    ax = CLASSIC.plot(3000, steps_per_epoch=100, label="classic")
    try:
        assert ax.get_legend().get_texts()[0].get_text() == "classic"
        assert len(epoch_axes(ax)) == 1
    finally:
        plt.close(ax.figure)


@pytest.mark.backend_independent
def test_long_runs_are_sampled_but_boundaries_stay_sharp():
    s = ss.Piecewise([3_000_001], [1.0, 0.1], duration=10_000_000)
    ax = ss.plot_schedule(s, ax=new_axes())
    x, y = curve(ax)
    assert len(x) <= MAX_POINTS + 2
    assert 3_000_000 in x and 3_000_001 in x
    np.testing.assert_allclose(y, s.at(x))


# ----------------------------------------------------------------- plot_schedules
@pytest.mark.backend_independent
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
@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
def test_key_points_of_restarts_and_piecewise():
    restarts = [p.step for p in key_points(ss.Restarts(ss.Linear(1.0, 0.0, 100), limit=3))
                if p.label == "restart"]
    assert restarts == [100.0, 200.0]
    boundaries = [p.step for p in key_points(ss.Piecewise([10, 20], [3.0, 2.0, 1.0]), 30)
                  if p.label == "boundary"]
    assert boundaries == [10.0, 20.0]


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
def test_module_examples_run():
    import doctest

    from stepsched import plotting
    from stepsched.schedules import preview

    failures, tried = doctest.testmod(preview, optionflags=doctest.ELLIPSIS)
    assert tried >= 3 and failures == 0
    failures, tried = doctest.testmod(plotting, optionflags=doctest.ELLIPSIS)
    assert tried >= 1 and failures == 0
    from stepsched.schedules import keys  # key_steps, which plotting re-exports

    failures, tried = doctest.testmod(keys, optionflags=doctest.ELLIPSIS)
    assert tried >= 1 and failures == 0


# ----------------------------------------------------------------- key steps of every class
def _child():
    """A piece with a join of its own at step 5."""
    return ss.Piecewise([5], [1.0, 0.5], duration=10)


#: one instance of every registered stepsched schedule: (schedule, horizon, expected key steps),
#: the expected steps read off the construction
KEY_STEP_EXAMPLES = {
    "Constant": (lambda: ss.Constant(1.0, 50), 100, []),
    "Linear": (lambda: ss.Linear(1.0, 0.0, 50), 100, []),
    "Cosine": (lambda: ss.Cosine(1.0, 0.0, 50), 100, []),
    "Exponential": (lambda: ss.Exponential(1.0, 0.5, every=10), 100, []),
    "Polynomial": (lambda: ss.Polynomial(1.0, 0.0, 50, power=2.0), 100, []),
    "Piecewise": (lambda: ss.Piecewise([10, 20, 40], [4.0, 3.0, 2.0, 1.0], duration=30), 100,
                  [10, 20]),  # 40 lies past the duration
    "Interpolate": (lambda: ss.Interpolate([0, 10, 30, 50], [0.0, 1.0, 0.5, 0.0]), 100, [10, 30]),
    "Warmup": (lambda: ss.Warmup(10), 100, []),
    "Sequence": (lambda: ss.Warmup(10) >> _child() >> ss.Linear(0.5, 0.0, 30), 100,
                 [10, 15, 20]),  # joins 10, 20; the child's boundary at 10 + 5
    "Restarts": (lambda: ss.Restarts(_child(), limit=3), 100, [10, 20]),
    "Affine": (lambda: _child() * 2.0 + 1.0, 100, [5]),
    "Clip": (lambda: _child().clip(min=0.6), 100, [5]),
    "PerUpdate": (lambda: ss.PerUpdate(ss.Piecewise([2.5], [1.0, 0.5]), 4), 100, [12]),
    "Planned": (lambda: Planned(ss.Warmup(ss.fraction(0.1)) >> ss.Linear(1.0, 0.0, ss.fraction(0.9)),
                                total_steps=100), 100, [10]),
    "Scaled": (lambda: ss.callbacks.Scaled(_child(), multiplier=0.5), 100, [5]),
    # the child's boundary at 5, then the cooldown from 30 to 50
    "Cooldown": (lambda: ss.Cooldown(_child(), 20, start_step=30), 100, [5, 30, 50]),
    "BatchScaled": (lambda: ss.BatchScaled(_child(), 32, batch_size=64), 100, [5]),
    "Extended": (lambda: ss.Extended(_child(), ss.Warmup(10) >> ss.Constant(0.5), at=40), 100,
                 [5, 40, 50]),  # the child's boundary, the new phase, its warmup's end
    "ExponentialDecay": (lambda: ss.ExponentialDecay(1.0, 10, 0.5), 100, []),
    "PiecewiseConstantDecay": (lambda: ss.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 100,
                               [11, 21]),  # Keras switches one step after each boundary
    "PolynomialDecay": (lambda: ss.PolynomialDecay(1.0, 50), 100, []),
    "InverseTimeDecay": (lambda: ss.InverseTimeDecay(1.0, 10, 0.5), 100, []),
    "CosineDecay": (lambda: ss.CosineDecay(0.0, 50, warmup_target=1.0, warmup_steps=10), 100,
                    [10]),
    "CosineDecayRestarts": (lambda: ss.CosineDecayRestarts(1.0, 10), 100, [10, 30, 70]),
    "OneCycle": (lambda: ss.OneCycle(max_lr=1.0, total_steps=100), 200, [29, 99]),
    "OneCycleMomentum": (lambda: ss.OneCycle(max_lr=1.0, total_steps=100).momentum(), 200,
                         [29, 99]),
    "Cyclic": (lambda: ss.Cyclic(0.1, 1.0, 10), 100, []),
    "WarmupCosine": (lambda: ss.WarmupCosine(peak=1.0, warmup=10, total=50), 100, [10]),
    "WarmupStableDecay": (lambda: ss.WarmupStableDecay(peak=1.0, warmup=10, decay=20, total=60),
                          100, [10, 40]),
    "InverseSqrt": (lambda: ss.InverseSqrt(peak=1.0, warmup=10), 100, [10]),
    "Noam": (lambda: ss.Noam(d_model=16, warmup=10), 100, [9]),
    "InversePower": (lambda: ss.InversePower(1.0, 10), 100, []),
    "SqrtDecay": (lambda: ss.SqrtDecay(1.0, 0.0, 50), 100, []),
    "KDecay": (lambda: ss.KDecay(1.0, 0.0, 50, k=2.0), 100, []),
    "TanhDecay": (lambda: ss.TanhDecay(1.0, 0.0, 50), 100, []),
    "Rex": (lambda: ss.Rex(1.0, 0.0, 50), 100, []),
}


def _registered_schedule_classes() -> dict[str, type]:
    out = {}
    for name, obj in keras.saving.get_custom_objects().items():
        if name.startswith("stepsched>") and isinstance(obj, type) and issubclass(obj, Schedule):
            out[obj.__name__] = obj
    return out


def _child_classes(schedule) -> list[type]:
    """The schedule classes nested in ``schedule``'s config (its children, at any depth)."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            cls = keras.saving.get_registered_object(value.get("registered_name") or "")
            if isinstance(cls, type) and issubclass(cls, Schedule):
                found.append(cls)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(schedule.get_config())
    return found


def _composites_without_key_steps(schedules) -> list[str]:
    """Classes that hold other schedules but do not say where their joins are."""
    return sorted({type(s).__name__ for s in schedules
                   if _child_classes(s) and not isinstance(s, Recipe)
                   and type(s).key_steps is Schedule.key_steps})


def test_every_registered_schedule_has_a_key_step_example():
    registered = _registered_schedule_classes()
    missing = sorted(set(registered) - set(KEY_STEP_EXAMPLES))
    assert not missing, (f"add an example to KEY_STEP_EXAMPLES for {missing}, with the key "
                         "steps it must report")
    for name, (make, _, _) in KEY_STEP_EXAMPLES.items():
        assert type(make()).__name__ == name


def test_every_composite_says_where_its_joins_are():
    schedules = [make() for make, _, _ in KEY_STEP_EXAMPLES.values()]
    assert _composites_without_key_steps(schedules) == []

    class Forgetful(Schedule):  # a new composite that forgot key_steps
        def __init__(self, schedule):
            super().__init__(schedule=schedule)

        def _eval(self, t, xp, clip=True):
            return self.arg("schedule")._eval(t, xp, clip)

    keras.saving.register_keras_serializable("stepsched_tests")(Forgetful)
    assert _composites_without_key_steps([Forgetful(_child())]) == ["Forgetful"]


@pytest.mark.parametrize("name", sorted(KEY_STEP_EXAMPLES))
def test_key_steps_of_every_class(name):
    make, horizon, expected = KEY_STEP_EXAMPLES[name]
    schedule = make()
    got = key_steps(schedule, horizon)
    assert [s for s, _ in got] == [float(s) for s in expected]
    assert all(isinstance(label, str) and label for _, label in got)
    if isinstance(schedule, Recipe) and type(schedule).key_steps is Recipe.key_steps:
        assert got == key_steps(schedule.explain(), horizon)
    if name != "Warmup":  # a lone Warmup has no value
        points = key_points(schedule, horizon, max_joins=50)
        for p in points:
            if not np.isnan(p.step):
                assert p.value == pytest.approx(float(schedule.at(p.step)))


# ----------------------------------------------------------------- joins from the values' arithmetic
RESTARTS = {
    # (schedule, cycle length of cycle 0, value at the start of cycle i)
    "keras-t_mul-2": (lambda: ss.CosineDecayRestarts(1e-3, first_decay_steps=1000), 20_000,
                      lambda i: 1e-3),
    "keras-t_mul-1.5-m_mul": (lambda: ss.CosineDecayRestarts(1e-3, 7, t_mul=1.5, m_mul=0.5),
                              5_000, lambda i: 1e-3 * 0.5 ** i),
    "keras-t_mul-1": (lambda: ss.CosineDecayRestarts(1e-3, 2 / 7, t_mul=1.0), 12,
                      lambda i: 1e-3),
    "restarts-period-2": (lambda: ss.Restarts(ss.Cosine(1e-3, 0.0, 1000), period_mult=2.0),
                          20_000, lambda i: 1e-3),
    "restarts-period-1.5-scale": (lambda: ss.Restarts(ss.Linear(1.0, 0.0, 7), period_mult=1.5,
                                                      scale=0.5), 5_000, lambda i: 0.5 ** i),
    "restarts-fractional-period": (lambda: ss.Restarts(ss.Linear(1.0, 0.0, 2 / 7), limit=40), 12,
                                   lambda i: 1.0),
}


@pytest.mark.parametrize("name", sorted(RESTARTS))
@pytest.mark.backend_independent
def test_key_points_at_restarts_show_the_new_cycle(name):
    """Defect: show printed ``restart 7,000  5.1e-34`` for CosineDecayRestarts(1e-3, 1000): the
    cycle start was computed as 6999.999..., where the value is the previous cycle's end."""
    make, horizon, start_value = RESTARTS[name]
    schedule = make()
    restarts = [p for p in key_points(schedule, horizon, max_joins=1000) if p.label == "restart"]
    assert len(restarts) >= 3
    for i, p in enumerate(restarts, start=1):
        assert p.value == pytest.approx(start_value(i), rel=1e-6), (i, p)
        assert p.value == float(schedule.at(p.step))
    if name == "keras-t_mul-2":
        assert [p.step for p in restarts] == [1000.0, 3000.0, 7000.0, 15000.0]


@pytest.mark.backend_independent
def test_show_prints_the_new_cycle_at_every_restart(capsys):
    from stepsched.cli import main

    assert main(["show", "CosineDecayRestarts(1e-3, first_decay_steps=1000)",
                 "--steps", "20000"]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("restart")]
    assert [r[1] for r in rows] == ["1,000", "3,000", "7,000", "15,000"]
    assert all(r[2] == "0.001" for r in rows)


@pytest.mark.backend_independent
def test_per_update_joins_fall_where_the_update_counter_reaches_them():
    # the inner join at update 2.5 is first seen by update 3, i.e. micro-batch 12
    s = ss.PerUpdate(ss.Linear(1.0, 0.0, 2.5) >> ss.Constant(0.1), 4)
    (join,) = [p for p in key_points(s, 40) if p.label.startswith("join")]
    assert join.step == 12.0 and join.value == pytest.approx(0.1)
    assert float(s.at(11)) != pytest.approx(0.1)


# ----------------------------------------------------------------- LR range test and plateau
def _finder_result(stop_reason="diverged"):
    lrs = np.geomspace(1e-5, 1.0, 80)
    losses = 2.0 / (1.0 + (lrs / 1e-2) ** 2) + 0.3 + (lrs > 0.2) * 20 * lrs
    n = 75 if stop_reason == "diverged" else 80
    return ss.LRFinderResult(lrs[:n], losses[:n], smoothing=0.5, stopped_early=n < 80,
                             stop_reason=stop_reason)


def _hlines(ax) -> dict[str, float]:
    """Horizontal lines by legend label: their y."""
    out = {}
    for line in ax.get_lines():
        y = np.asarray(line.get_ydata(), float)
        if len(y) == 2 and y[0] == y[1] and tuple(line.get_xdata()) == (0, 1):
            out[line.get_label()] = float(y[0])
    return out


@pytest.mark.backend_independent
def test_lr_finder_over_a_schedule_marks_suggestion_minimum_and_divergence(tmp_path):
    result = _finder_result()
    schedule = ss.WarmupCosine(peak=result.suggestion(), warmup=100, total=1000)
    ax = ss.plot_lr_finder(result, schedule, ax=new_axes())
    assert ax.get_yscale() == "log"
    x, y = curve(ax)
    positive = schedule.at(x) > 0  # a log axis shows zero at the smallest positive value
    np.testing.assert_allclose(y[positive], schedule.at(x[positive]), rtol=1e-6)
    lines = _hlines(ax)
    suggested = next(v for k, v in lines.items() if k.startswith("suggested"))
    minimum = next(v for k, v in lines.items() if k.startswith("loss minimum"))
    assert suggested == pytest.approx(result.suggestion("steepest"))
    assert minimum == pytest.approx(result.lrs[int(np.argmin(result.smoothed))])
    (band,) = [p for p in ax.patches if p.get_label().startswith("loss diverged")]
    # a Rectangle (matplotlib >= 3.9) or a Polygon, in data coordinates along y
    y0 = band.get_y() if hasattr(band, "get_y") else np.asarray(band.get_xy())[:, 1].min()
    assert y0 == pytest.approx(result.lrs[-1])  # from where the test stopped
    assert ax.get_ylim()[1] > result.lrs[-1]
    ax.figure.savefig(tmp_path / "finder.png", dpi=50)
    # a test that completed has no divergence band; another method moves the suggestion
    ax = ss.plot_lr_finder(_finder_result("completed"), schedule, ax=new_axes(),
                                    method="minimum/10")
    assert not [p for p in ax.patches if p.get_label().startswith("loss diverged")]
    assert any(k.endswith("(minimum/10)") for k in _hlines(ax))


@pytest.mark.backend_independent
def test_lr_finder_sweep_shows_the_tests_own_schedule_and_loss():
    result = _finder_result()
    ax = ss.plot_lr_finder(result, ax=new_axes())
    x, y = curve(ax)
    np.testing.assert_array_equal(x, np.arange(len(result.lrs)))
    np.testing.assert_allclose(y, result.lrs)
    right_x, right_y = np.asarray(ax.right_ax.get_lines()[1].get_xdata()), \
        np.asarray(ax.right_ax.get_lines()[1].get_ydata())
    np.testing.assert_allclose(right_y, result.smoothed)
    assert len(right_x) == len(result.lrs)
    marker = [ln for ln in ax.get_lines() if ln.get_label().startswith("suggested")]
    step = marker[0].get_xdata()[0]
    assert result.lrs[step] >= result.suggestion() > result.lrs[step - 1]
    with pytest.raises(TypeError, match="LRFinderResult"):
        ss.plot_lr_finder({"lrs": [1.0]}, ax=new_axes())


def test_reductions_drawn_over_the_schedule_from_a_list():
    schedule = ss.Warmup(10) >> ss.Cosine(1.0, 0.0, 90)
    ax = ss.plot_reductions(schedule, [(30, 0.5), (60, 0.25)], ax=new_axes(),
                                     min_lr=0.1)
    planned = next(ln for ln in ax.get_lines() if ln.get_label() == "as scheduled")
    applied = next(ln for ln in ax.get_lines() if ln.get_label().startswith("applied"))
    x = np.asarray(applied.get_xdata())
    np.testing.assert_allclose(planned.get_ydata(), schedule.at(x), rtol=1e-6)
    multiplier = np.where(x >= 60, 0.25, np.where(x >= 30, 0.5, 1.0))
    base = schedule.at(x).astype(np.float64)
    expected = np.maximum(base * multiplier, np.minimum(base, 0.1))
    np.testing.assert_allclose(applied.get_ydata(), expected, rtol=1e-6)
    marks = next(ln for ln in ax.get_lines() if ln.get_label() == "2 reductions")
    np.testing.assert_array_equal(marks.get_xdata(), [30, 60])
    assert [t.get_text() for t in ax.texts] == ["x0.5", "x0.25"]
    with pytest.raises(ValueError, match=r"reductions\[1\] step"):
        ss.plot_reductions(schedule, [(30, 0.5), (20, 0.25)], ax=new_axes())
    with pytest.raises(ValueError, match=r"reductions\[0\] multiplier"):
        ss.plot_reductions(schedule, [(30, -0.5)], ax=new_axes())
    with pytest.raises(TypeError, match="reductions"):
        ss.plot_reductions(schedule, 0.5, ax=new_axes())


def test_reductions_of_a_real_plateau_run_match_the_applied_rates():
    """The applied curve equals the rates the optimizer applied, read off the exact probe."""
    from tests.probe import WeightRecorder, probe_data, probe_model

    schedule = ss.Warmup(4, start=0.2) >> ss.Exponential(1.0, 0.98)
    model = probe_model(schedule)
    # the probe's loss is w, which falls: in mode "max" every check after the first is bad
    plateau = ss.callbacks.ReduceLROnPlateau(monitor="loss", every=4, patience=1, factor=0.5,
                                             mode="max", min_lr=0.1)
    recorder = WeightRecorder()
    x, y = probe_data(32)
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0,
              callbacks=[plateau, recorder])
    assert len(plateau.reductions) >= 3
    rates = recorder.rates()
    ax = ss.plot_reductions(schedule, plateau, total_steps=len(rates), ax=new_axes())
    applied = next(ln for ln in ax.get_lines() if ln.get_label().startswith("applied"))
    x_plot, y_plot = np.asarray(applied.get_xdata()), np.asarray(applied.get_ydata())
    steps = np.arange(len(rates))
    np.testing.assert_allclose(np.interp(steps, x_plot, y_plot), rates, rtol=1e-5, atol=1e-6)
    # min_lr, taken from the callback: the last reduction would go below it
    assert plateau.reductions[-1][1] * float(schedule.at(len(rates) - 1)) < 0.1
    assert rates[-1] == pytest.approx(0.1, rel=1e-5)


@pytest.mark.backend_independent
def test_sequence_key_steps_follow_the_step_each_piece_sees():
    pieces = [ss.Constant(1.0, 10), ss.Piecewise([5, 15], [1.0, 0.5, 0.25])]
    # relative: the second piece starts at its own step 0, so its boundaries sit at 15 and 25
    assert [s for s, _ in key_steps(ss.Sequence(pieces), 100)] == [10, 15, 25]
    # global: it sees the step itself; its boundary at 5 lies before it begins
    glob = ss.Sequence(pieces, relative=False)
    assert [s for s, _ in key_steps(glob, 100)] == [10, 15]
    for p in key_points(glob, 30):
        assert p.value == pytest.approx(float(glob.at(p.step)))
    assert float(glob.at(15)) == pytest.approx(0.25) and float(glob.at(14)) == pytest.approx(0.5)
