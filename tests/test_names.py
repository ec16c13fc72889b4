"""Schedules from text: ``stepsched.parse`` and transformers' names (``get_schedule``).

transformers is not a dependency: its ``lr_lambda`` functions are rewritten
below from ``transformers/optimization.py`` (``get_scheduler`` and the
functions it dispatches to), keeping their names, arguments and branches, and
multiplied by the optimizer's rate as ``LambdaLR`` does. Every step of each
run is compared, and the steps past its end where the two conventions agree.
"""

from __future__ import annotations

import enum
import json
import math

import keras
import numpy as np
import pytest

import stepsched as ss
from stepsched.spec import SCHEDULER_NAMES, SpecError
from tests.conftest import graph_values

PEAK = 3e-4


# ------------------------------------------------------------------ transformers' lambdas
def linear_lambda(t, *, num_warmup_steps, num_training_steps):
    if t < num_warmup_steps:
        return float(t) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - t)
               / float(max(1, num_training_steps - num_warmup_steps)))


def cosine_lambda(t, *, num_warmup_steps, num_training_steps, num_cycles=0.5, min_lr_rate=0.0):
    if t < num_warmup_steps:
        return float(t) / float(max(1, num_warmup_steps))
    progress = float(t - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
    factor = factor * (1 - min_lr_rate) + min_lr_rate
    return max(0, factor)


def hard_restarts_lambda(t, *, num_warmup_steps, num_training_steps, num_cycles=1):
    if t < num_warmup_steps:
        return float(t) / float(max(1, num_warmup_steps))
    progress = float(t - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(num_cycles) * progress) % 1.0))))


def polynomial_lambda(t, *, num_warmup_steps, num_training_steps, lr_end=1e-7, power=1.0,
                      lr_init=PEAK):
    if t < num_warmup_steps:
        return float(t) / float(max(1, num_warmup_steps))
    if t > num_training_steps:
        return lr_end / lr_init
    lr_range = lr_init - lr_end
    decay_steps = num_training_steps - num_warmup_steps
    pct_remaining = 1 - (t - num_warmup_steps) / decay_steps
    return (lr_range * pct_remaining**power + lr_end) / lr_init


def constant_lambda(t):
    return 1


def constant_with_warmup_lambda(t, *, num_warmup_steps):
    if t < num_warmup_steps:
        return float(t) / float(max(1.0, num_warmup_steps))
    return 1.0


def inverse_sqrt_lambda(t, *, num_warmup_steps, timescale=None):
    if timescale is None:
        timescale = num_warmup_steps or 10_000
    if t < num_warmup_steps:
        return float(t) / float(max(1, num_warmup_steps))
    shift = timescale - num_warmup_steps
    return 1.0 / math.sqrt((t + shift) / timescale)


def cosine_warmup_min_lr_lambda(t, *, num_warmup_steps, num_training_steps, num_cycles=0.5,
                                min_lr_rate=0.0, warmup_lr_rate=None):
    t, w, total = float(t), float(num_warmup_steps), float(num_training_steps)
    if t < w:
        if warmup_lr_rate is None:
            return (t + 1.0) / max(1.0, w)
        return warmup_lr_rate + (1.0 - warmup_lr_rate) * t / max(1, w - 1)
    progress = (t - w + 1.0) / max(1.0, total - w)
    factor = 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress))
    return max(0, factor * (1 - min_lr_rate) + min_lr_rate)


def wsd_lambda(t, *, num_warmup_steps, num_decay_steps, num_training_steps=None,
               num_stable_steps=None, warmup_type="linear", decay_type="cosine", min_lr_ratio=0,
               num_cycles=0.5):
    if num_stable_steps is None:
        num_stable_steps = num_training_steps - num_warmup_steps - num_decay_steps
    if t < num_warmup_steps:
        progress = float(t) / float(max(1, num_warmup_steps))
        factor = {"linear": progress, "cosine": 0.5 * (1.0 - math.cos(math.pi * progress)),
                  "1-sqrt": 1.0 - math.sqrt(1.0 - progress)}[warmup_type]
        return max(0.0, factor * (1.0 - min_lr_ratio) + min_lr_ratio)
    if t < num_warmup_steps + num_stable_steps:
        return 1.0
    if t < num_warmup_steps + num_stable_steps + num_decay_steps:
        progress = float(t - num_warmup_steps - num_stable_steps) / float(max(1, num_decay_steps))
        factor = {"linear": 1.0 - progress,
                  "cosine": 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)),
                  "1-sqrt": 1.0 - math.sqrt(progress)}[decay_type]
        return max(0.0, factor * (1.0 - min_lr_ratio) + min_lr_ratio)
    return min_lr_ratio


# (name, get_schedule kwargs, transformers lambda, steps compared)
# The steps compared run past num_training_steps where the conventions agree; for the
# half-cosine names (num_cycles=0.5) they stop at the end of the run, after which
# transformers' cosine rises again and stepsched holds the end value.
CASES = {
    "linear": ("linear", dict(warmup=37, total=250),
               lambda t: linear_lambda(t, num_warmup_steps=37, num_training_steps=250), 400),
    "linear-no-warmup": ("linear", dict(warmup=0, total=90),
                         lambda t: linear_lambda(t, num_warmup_steps=0, num_training_steps=90),
                         120),
    "cosine": ("cosine", dict(warmup=37, total=251),
               lambda t: cosine_lambda(t, num_warmup_steps=37, num_training_steps=251), 252),
    "cosine-num_cycles-2": (
        "cosine", dict(warmup=10, total=130, num_cycles=2.0),
        lambda t: cosine_lambda(t, num_warmup_steps=10, num_training_steps=130, num_cycles=2.0),
        400),
    "cosine-num_cycles-0.3": (
        "cosine", dict(warmup=5, total=105, num_cycles=0.3),
        lambda t: cosine_lambda(t, num_warmup_steps=5, num_training_steps=105, num_cycles=0.3),
        300),
    "cosine_with_restarts": (
        "cosine_with_restarts", dict(warmup=10, total=310, num_cycles=3),
        lambda t: hard_restarts_lambda(t, num_warmup_steps=10, num_training_steps=310,
                                       num_cycles=3), 400),
    "cosine_with_restarts-uneven-default": (
        "cosine_with_restarts", dict(warmup=7, total=107),
        lambda t: hard_restarts_lambda(t, num_warmup_steps=7, num_training_steps=107), 200),
    "polynomial": ("polynomial", dict(warmup=15, total=200, lr_end=1e-7, power=2.0),
                   lambda t: polynomial_lambda(t, num_warmup_steps=15, num_training_steps=200,
                                               lr_end=1e-7, power=2.0), 300),
    "polynomial-defaults": ("polynomial", dict(warmup=4, total=64),
                            lambda t: polynomial_lambda(t, num_warmup_steps=4,
                                                        num_training_steps=64), 80),
    "constant": ("constant", dict(total=50), constant_lambda, 80),
    "constant_with_warmup": ("constant_with_warmup", dict(warmup=25),
                             lambda t: constant_with_warmup_lambda(t, num_warmup_steps=25), 100),
    "inverse_sqrt": ("inverse_sqrt", dict(warmup=40, total=500),
                     lambda t: inverse_sqrt_lambda(t, num_warmup_steps=40), 500),
    "inverse_sqrt-timescale": ("inverse_sqrt", dict(warmup=40, timescale=300),
                               lambda t: inverse_sqrt_lambda(t, num_warmup_steps=40,
                                                             timescale=300), 500),
    "inverse_sqrt-no-warmup": ("inverse_sqrt", dict(warmup=0),
                               lambda t: inverse_sqrt_lambda(t, num_warmup_steps=0), 500),
    "cosine_with_min_lr-rate": (
        "cosine_with_min_lr", dict(warmup=30, total=200, min_lr_rate=0.1),
        lambda t: cosine_lambda(t, num_warmup_steps=30, num_training_steps=200, min_lr_rate=0.1),
        201),
    "cosine_with_min_lr-absolute": (
        "cosine_with_min_lr", dict(warmup=30, total=200, min_lr=2e-5),
        lambda t: cosine_lambda(t, num_warmup_steps=30, num_training_steps=200,
                                min_lr_rate=2e-5 / PEAK), 201),
    "cosine_with_min_lr-num_cycles-1.5": (
        "cosine_with_min_lr", dict(warmup=20, total=140, min_lr_rate=0.2, num_cycles=1.5),
        lambda t: cosine_lambda(t, num_warmup_steps=20, num_training_steps=140, num_cycles=1.5,
                                min_lr_rate=0.2), 500),
    "cosine_warmup_with_min_lr": (
        "cosine_warmup_with_min_lr", dict(warmup=30, total=200, min_lr_rate=0.1),
        lambda t: cosine_warmup_min_lr_lambda(t, num_warmup_steps=30, num_training_steps=200,
                                              min_lr_rate=0.1), 200),
    "cosine_warmup_with_min_lr-warmup_lr_rate": (
        "cosine_warmup_with_min_lr", dict(warmup=12, total=90, min_lr=1e-5, warmup_lr_rate=0.05),
        lambda t: cosine_warmup_min_lr_lambda(t, num_warmup_steps=12, num_training_steps=90,
                                              min_lr_rate=1e-5 / PEAK, warmup_lr_rate=0.05), 90),
    "cosine_warmup_with_min_lr-one-warmup-step": (
        "cosine_warmup_with_min_lr", dict(warmup=1, total=50, min_lr_rate=0.0),
        lambda t: cosine_warmup_min_lr_lambda(t, num_warmup_steps=1, num_training_steps=50), 50),
    "warmup_stable_decay-defaults-total": (
        "warmup_stable_decay", dict(warmup=20, total=230, num_decay_steps=60),
        lambda t: wsd_lambda(t, num_warmup_steps=20, num_decay_steps=60, num_training_steps=230),
        300),
    "warmup_stable_decay-stable-linear-min": (
        "warmup_stable_decay", dict(warmup=10, num_stable_steps=40, num_decay_steps=50,
                                    decay_type="linear", min_lr_ratio=0.05),
        lambda t: wsd_lambda(t, num_warmup_steps=10, num_stable_steps=40, num_decay_steps=50,
                             decay_type="linear", min_lr_ratio=0.05), 150),
    "warmup_stable_decay-1-sqrt": (
        "warmup_stable_decay", dict(warmup=16, total=160, num_decay_steps=64, decay_type="1-sqrt",
                                    min_lr_ratio=0.1),
        lambda t: wsd_lambda(t, num_warmup_steps=16, num_decay_steps=64, num_training_steps=160,
                             decay_type="1-sqrt", min_lr_ratio=0.1), 200),
    "warmup_stable_decay-cosine-warmup": (
        "warmup_stable_decay", dict(warmup=25, total=200, num_decay_steps=50, warmup_type="cosine",
                                    min_lr_ratio=0.1),
        lambda t: wsd_lambda(t, num_warmup_steps=25, num_decay_steps=50, num_training_steps=200,
                             warmup_type="cosine", min_lr_ratio=0.1), 250),
    "warmup_stable_decay-1-sqrt-warmup-stable": (
        "warmup_stable_decay", dict(warmup=25, num_stable_steps=30, num_decay_steps=45,
                                    warmup_type="1-sqrt", decay_type="linear", min_lr_ratio=0.2),
        lambda t: wsd_lambda(t, num_warmup_steps=25, num_stable_steps=30, num_decay_steps=45,
                             warmup_type="1-sqrt", decay_type="linear", min_lr_ratio=0.2), 150),
}


def _reference(fn, n: int) -> np.ndarray:
    return PEAK * np.array([fn(t) for t in range(n)], np.float64)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.backend_independent
def test_names_match_transformers(case):
    name, kwargs, fn, n = CASES[case]
    ours = ss.get_schedule(name, peak=PEAK, **kwargs).at(range(n))
    np.testing.assert_allclose(ours, _reference(fn, n), rtol=1e-6, atol=1e-6 * PEAK)


@pytest.mark.backend_independent
def test_every_transformers_name_is_covered():
    covered = {name for name, *_ in CASES.values()} | {"reduce_lr_on_plateau"}
    assert covered == set(SCHEDULER_NAMES)


@pytest.mark.backend_independent
def test_half_cosine_past_the_end_holds_where_transformers_rises():
    ours = ss.get_schedule("cosine", peak=PEAK, warmup=10, total=110).at(range(110, 211))
    theirs = _reference(lambda t: cosine_lambda(t, num_warmup_steps=10,
                                                num_training_steps=110), 211)[110:]
    assert np.all(ours == 0.0) and theirs[-1] == pytest.approx(PEAK)


@pytest.mark.parametrize("case", ["cosine-num_cycles-2", "cosine_with_min_lr-num_cycles-1.5",
                                  "cosine_warmup_with_min_lr", "warmup_stable_decay-1-sqrt",
                                  "warmup_stable_decay-1-sqrt-warmup-stable", "polynomial"])
def test_names_in_graph_match_host(case):
    name, kwargs, _, n = CASES[case]
    schedule = ss.get_schedule(name, peak=PEAK, **kwargs)
    steps = np.arange(n)
    np.testing.assert_allclose(graph_values(schedule, steps), schedule.at(steps),
                               rtol=1e-5, atol=1e-7 * PEAK)


@pytest.mark.parametrize("case", ["cosine", "cosine-num_cycles-2", "cosine_warmup_with_min_lr",
                                  "warmup_stable_decay-cosine-warmup"])
def test_named_schedules_serialize(case):
    name, kwargs, _, n = CASES[case]
    schedule = ss.get_schedule(name, peak=PEAK, **kwargs)
    config = json.dumps(keras.saving.serialize_keras_object(schedule))
    again = ss.parse(config)
    np.testing.assert_array_equal(again.at(range(n)), schedule.at(range(n)))


@pytest.mark.backend_independent
def test_transformers_argument_names_and_enum_are_accepted():
    class SchedulerType(str, enum.Enum):  # transformers' enum is a str Enum of these values
        COSINE = "cosine"

    ours = ss.get_schedule(SchedulerType.COSINE, PEAK, num_warmup_steps=10,
                           num_training_steps=100)
    np.testing.assert_array_equal(ours.at(range(101)),
                                  ss.WarmupCosine(PEAK, 10, 100).at(range(101)))
    with pytest.raises(TypeError, match="give warmup or its transformers name num_warmup_steps"):
        ss.get_schedule("cosine", PEAK, warmup=5, total=100, num_warmup_steps=10)


@pytest.mark.backend_independent
def test_symbolic_durations_where_a_recipe_takes_them():
    lr = ss.get_schedule("cosine", PEAK, warmup=ss.fraction(0.1), total=ss.fraction(1.0))
    np.testing.assert_allclose(lr.resolve(total_steps=200).at(range(201)),
                               ss.get_schedule("cosine", PEAK, 20, 200).at(range(201)),
                               rtol=1e-7)
    wsd = ss.get_schedule("warmup_stable_decay", PEAK, warmup=ss.epochs(1), total=ss.epochs(5),
                          num_decay_steps=ss.epochs(2))
    np.testing.assert_allclose(
        wsd.resolve(steps_per_epoch=10).at(range(60)),
        _reference(lambda t: wsd_lambda(t, num_warmup_steps=10, num_decay_steps=20,
                                        num_training_steps=50), 60), rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match=r"get_schedule\('linear'\) needs warmup, total as "
                                         r"numbers of steps, got total=fraction\(1\)"):
        ss.get_schedule("linear", PEAK, warmup=10, total=ss.fraction(1.0))


@pytest.mark.backend_independent
def test_wsd_with_both_total_and_stable_uses_stable_as_transformers_does():
    with pytest.warns(UserWarning, match="num_stable_steps is used"):
        ours = ss.get_schedule("warmup_stable_decay", PEAK, 10, 999, num_stable_steps=20,
                               num_decay_steps=30)
    theirs = _reference(lambda t: wsd_lambda(t, num_warmup_steps=10, num_stable_steps=20,
                                             num_decay_steps=30), 80)
    np.testing.assert_allclose(ours.at(range(80)), theirs, rtol=1e-6, atol=1e-12)


BAD = [
    # (name, kwargs, exception, message fragment that must appear)
    ("cosin", {}, ValueError, "got 'cosin'; did you mean 'cosine'?"),
    ("Linear", {}, ValueError, "did you mean 'linear'?"),
    (3, {}, TypeError, "name must be a scheduler name"),
    ("reduce_lr_on_plateau", {}, ValueError, "stepsched.callbacks.ReduceLROnPlateau"),
    ("linear", {"num_cycles": 2}, TypeError, "unexpected option(s) num_cycles; 'linear' takes "
                                             "no options"),
    ("cosine", {"min_lr": 1e-5}, TypeError, "'cosine' takes num_cycles"),
    ("cosine", {"total": None}, ValueError, "needs total"),
    ("cosine", {"total": 10, "warmup": 10}, ValueError, "total must be > warmup"),
    ("cosine", {"num_cycles": 0}, ValueError, "num_cycles"),
    ("cosine", {"peak": 0.0}, ValueError, "peak"),
    ("cosine", {"peak": "3e-4"}, TypeError, "peak"),
    ("cosine", {"warmup": -1}, ValueError, "warmup"),
    ("cosine_with_restarts", {"num_cycles": 1.5}, TypeError, "num_cycles must be an integer"),
    ("polynomial", {"lr_end": 1.0}, ValueError, "lr_end must be smaller than peak"),
    ("polynomial", {"power": -1.0}, ValueError, "power"),
    ("constant", {"warmup": 10}, ValueError, "use 'constant_with_warmup'"),
    ("inverse_sqrt", {"timescale": 0}, ValueError, "timescale"),
    ("cosine_with_min_lr", {}, ValueError, "needs min_lr or min_lr_rate"),
    ("cosine_with_min_lr", {"min_lr": 1e-5, "min_lr_rate": 0.1}, ValueError, "not both"),
    ("cosine_with_min_lr", {"min_lr": -1e-5}, ValueError, "min_lr"),
    ("cosine_warmup_with_min_lr", {"min_lr_rate": 0.1, "warmup": 0}, ValueError,
     "needs warmup >= 1"),
    ("cosine_warmup_with_min_lr", {"min_lr_rate": 0.1, "warmup": 1, "warmup_lr_rate": 0.1},
     ValueError, "needs warmup >= 2"),
    ("cosine_warmup_with_min_lr", {"min_lr_rate": 0.1, "num_cycles": 1.0}, ValueError,
     "num_cycles=0.5 only"),
    ("warmup_stable_decay", {}, ValueError, "needs num_decay_steps"),
    ("warmup_stable_decay", {"num_decay_steps": 20, "total": None}, ValueError,
     "needs total or num_stable_steps"),
    ("warmup_stable_decay", {"num_decay_steps": 20, "warmup_type": "exp"}, ValueError,
     "warmup_type must be one of"),
    ("warmup_stable_decay", {"num_decay_steps": 20, "decay_type": "exponential"}, ValueError,
     "decay_type must be one of"),
    ("warmup_stable_decay", {"num_decay_steps": 20, "min_lr_ratio": 1.5}, ValueError,
     "min_lr_ratio"),
    ("warmup_stable_decay", {"num_decay_steps": 95}, ValueError, "total must be >= warmup + decay"),
    ("warmup_stable_decay", {"num_decay_steps": 20, "num_cycles": 1.0}, ValueError,
     "num_cycles=0.5 only"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "fragment"), BAD,
                         ids=[f"{b[0]}-{'-'.join(b[1]) or 'defaults'}" for b in BAD])
@pytest.mark.backend_independent
def test_bad_names_and_arguments_are_refused_naming_them(name, kwargs, error, fragment):
    args = {"peak": PEAK, "warmup": 10, "total": 100, **kwargs}
    with pytest.raises(error) as info:
        ss.get_schedule(name, **args)
    assert fragment in str(info.value)


# ------------------------------------------------------------------ parse
@pytest.mark.parametrize("text", [
    "Warmup(500) >> Cosine(1e-3, 0, 9500)",
    "Warmup(fraction(0.05), start=1e-6) >> Cosine(3e-4, 0, fraction(0.95))",
    "Restarts(Cosine(0.1, 0.001, 50), period_mult=2.0) * 0.5",
])
@pytest.mark.backend_independent
def test_parse_builds_what_python_builds(text):
    direct = eval(text, {"__builtins__": {}},  # trusted test input
                  {**{n: getattr(ss, n) for n in ss.__all__}})
    parsed = ss.parse(text)
    assert repr(parsed) == repr(direct)
    resolved = (parsed.resolve(total_steps=10_000), direct.resolve(total_steps=10_000))
    np.testing.assert_array_equal(resolved[0].at(range(0, 10_000, 7)),
                                  resolved[1].at(range(0, 10_000, 7)))


def test_parse_reads_inline_json_config():
    schedule = ss.Warmup(10) >> ss.Exponential(1e-3, 0.9, every=100)
    text = json.dumps(keras.saving.serialize_keras_object(schedule))
    np.testing.assert_array_equal(ss.parse(text).at(range(300)), schedule.at(range(300)))


@pytest.mark.backend_independent
def test_parse_never_opens_a_file(tmp_path):
    path = tmp_path / "spec.txt"
    path.write_text("Constant(0.1)")
    with pytest.raises(SpecError, match="syntax error|unknown name|not allowed"):
        ss.parse(str(path))
    # load_spec (what `stepsched show` uses) does read files
    from stepsched.spec import load_spec

    assert float(load_spec(str(path)).at(0)) == pytest.approx(0.1)


@pytest.mark.parametrize(("text", "fragment"), [
    ("__import__('os')", "unknown name '__import__'"),
    ("__import__('os').system('echo owned')", "can be called, not attribute access"),
    ("Constant(1.0).at(5)", "attribute access"),
    ("cosine(3e-4)", "use stepsched.get_schedule('cosine'"),
    ("Cosin(1e-3, 0, 10)", "did you mean Cosine?"),
    ("Linear(1.0, 0.0, -5)", "Linear(...): duration"),
    ("", "text is empty"),
    ("3 * 4", "must describe a schedule"),
    ('{"class_name": "Lambda", "config": {}}', "not a stepsched schedule"),
])
@pytest.mark.backend_independent
def test_parse_refuses_with_a_one_line_message(text, fragment):
    with pytest.raises(SpecError) as info:
        ss.parse(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.backend_independent
def test_parse_refuses_non_text():
    with pytest.raises(SpecError, match="text must be a string, got bytes"):
        ss.parse(b"Constant(0.1)")


@pytest.mark.backend_independent
def test_migration_page_names_section_runs():
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "migration.md").read_text()
    section = page.split("## Schedules by name", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {"__name__": "migration"}
    exec(compile(blocks[0], "docs/migration.md", "exec"), namespace)  # noqa: S102
    ref = _reference(lambda t: wsd_lambda(t, num_warmup_steps=200, num_decay_steps=2_000,
                                          num_training_steps=10_000, min_lr_ratio=0.1), 10_500)
    np.testing.assert_allclose(namespace["wsd"].at(range(10_500)), ref / PEAK * 1e-3,
                               rtol=1e-6, atol=1e-12)
