"""Every schedule's repr is expression text that ``ss.parse`` reads back to an equal schedule.

"Equal" here means the same Keras config: ``keras.saving.serialize_keras_object`` of
both is the same, class names and nested schedules and durations included; where a
schedule has no batch-size or epoch units left, the values ``at()`` a grid of steps are
compared too. One part of a state is not schedule text and is left out of the
comparison: a ``Scaled``'s plateau bookkeeping (``state``: the best loss so far, the
wait, ...), which tells the plateau callback when to reduce next and does not change
any value; its multiplier and ``min_lr`` are in the repr. A ``Cooldown``'s start step
is in its repr.

The classes come from Keras's registry (package ``stepsched``): a new schedule class
without a sample here, or whose repr the parser cannot read, fails this test.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import stepsched as ss
from stepsched.callbacks import Scaled
from stepsched.cli import main
from stepsched.schedules.base import Schedule
from stepsched.spec import SpecError, allowed_names, parse


def registered_schedule_classes() -> dict[str, type]:
    """Every schedule class registered with Keras under the package ``stepsched``."""
    out = {}
    for key, obj in keras.saving.get_custom_objects().items():
        package, _, name = key.partition(">")
        if package == "stepsched" and isinstance(obj, type) and issubclass(obj, Schedule):
            out[name] = obj
    return out


def _planned_after_a_change():
    first = ss.Planned(ss.Warmup(ss.epochs(1)) >> ss.Cosine(1e-3, 0.0, ss.fraction(0.9)),
                       steps_per_epoch=100, total_steps=1000)
    return ss.Planned(first.arg("schedule"), 100, 1500, previous=first, since=400,
                      policy="continue")


def _planned_after_a_batch_size_change():
    first = ss.Planned(ss.Warmup(ss.samples(64)) >> ss.Constant(0.1), 8, 48, batch_size=4)
    return ss.Planned(first.arg("schedule"), 8, 96, previous=first, since=16,
                      policy="continue", batch_size=8)


def _scaled_reduced():
    s = Scaled(ss.WarmupCosine(1e-3, 100, ss.fraction(1.0)), min_lr=1e-6)
    s.plateau.set(0.25)
    return s


#: per class name, builders of representative instances (plain, nested, and with
#: durations in epochs / fraction / samples / tokens where the class takes them)
SAMPLES = {
    "Constant": [lambda: ss.Constant(1e-3), lambda: ss.Constant(0.5, ss.samples(6400)),
                 lambda: ss.Constant(0.123456789, 10)],
    "Linear": [lambda: ss.Linear(1.0, 0.0, 10), lambda: ss.Linear(0, 1e-3, ss.epochs(2.5)),
               lambda: ss.Linear(1e-3, 1e-5, ss.tokens(2_000_000, tokens_per_sample=512))],
    "Cosine": [lambda: ss.Cosine(1e-3, 1e-5, 900, exponent=2.0),
               lambda: ss.Cosine(3e-4, 0.0, ss.fraction(0.95))],
    "Exponential": [lambda: ss.Exponential(1e-3, rate=0.96, every=1000, staircase=True),
                    lambda: ss.Exponential(0.1, 0.5, every=ss.epochs(1), limit=1e-4,
                                           duration=ss.samples(1_000_000))],
    "Polynomial": [lambda: ss.Polynomial(1.0, 0.0, ss.steps(100), power=2.0)],
    "Piecewise": [lambda: ss.Piecewise([10, 20], [1.0, 0.5, 0.25]),
                  lambda: ss.Piecewise([ss.epochs(1), ss.epochs(3)], [1e-3, 1e-4, 1e-5],
                                       duration=ss.epochs(5))],
    "Interpolate": [lambda: ss.Interpolate([0, 50, 100], [0.0, 1.0, 0.0], kind="cosine")],
    "Warmup": [lambda: ss.Warmup(ss.samples(12_800), start=1e-6, shape="exponential")],
    "Sequence": [
        lambda: ss.Warmup(ss.epochs(2)) >> ss.Exponential(1e-3, rate=0.96, every=1000),
        lambda: ss.Sequence([ss.Constant(1.0, 10), ss.Linear(1.0, 0.0, 10)], relative=False),
        lambda: ss.Sequence([ss.Constant(1.0, 10) >> ss.Linear(1.0, 0.5, 10),
                             ss.Cosine(0.5, 0.0, 80)]),  # a sequence inside a sequence
        lambda: ss.Sequence([ss.Linear(1.0, 0.0, 10)]),  # a single piece
        lambda: ss.Linear(1e-3, 0.0, 50) >> 1e-5,
    ],
    "Restarts": [lambda: ss.Restarts(ss.Warmup(50) >> ss.Cosine(1e-2, 1e-4, 450), scale=0.5,
                                     limit=3, period_mult=2.0)],
    "Affine": [
        lambda: ss.Linear(1.0, 0.0, 10) * 0.5,
        lambda: (ss.Warmup(10) >> ss.Constant(0.1)) * 2 + 1e-4,
        lambda: ss.Cosine(1.0, 0.0, 10) * -1.5 - 0.25,
        lambda: ss.Cosine(1.0, 0.0, 10) * 0.1234567891,
        lambda: ss.Affine(ss.Constant(1.0)),  # the identity
        lambda: ss.Affine(ss.Affine(ss.Constant(1.0), scale=2.0), scale=3.0, offset=1.0),
    ],
    "Clip": [lambda: ss.Linear(1.0, -1.0, ss.fraction(0.5)).clip(min=0.1),
             lambda: ss.Clip(ss.Constant(2.0), min=None, max=1.0)],
    "PerUpdate": [lambda: ss.Linear(1.0, 0.0, ss.samples(640)).per_update(4)],
    "ExponentialDecay": [lambda: ss.ExponentialDecay(1e-3, 1000, 0.96, staircase=True)],
    "PiecewiseConstantDecay": [lambda: ss.PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])],
    "PolynomialDecay": [lambda: ss.PolynomialDecay(1e-3, ss.epochs(10), cycle=True,
                                                   name="poly")],
    "InverseTimeDecay": [lambda: ss.InverseTimeDecay(1e-3, 100, 0.5)],
    "CosineDecay": [lambda: ss.CosineDecay(0.0, ss.fraction(0.9), alpha=0.1, warmup_target=1e-3,
                                           warmup_steps=ss.fraction(0.1))],
    "CosineDecayRestarts": [lambda: ss.CosineDecayRestarts(1e-3, 1000, t_mul=1.5, m_mul=0.9)],
    "OneCycle": [lambda: ss.OneCycle(1e-2, ss.epochs(10), three_phase=True)],
    "OneCycleMomentum": [lambda: ss.OneCycleMomentum(1000, pct_start=0.25)],
    "Cyclic": [lambda: ss.Cyclic(1e-4, 1e-2, up=ss.epochs(2), mode="exp_range", gamma=0.99)],
    "WarmupCosine": [lambda: ss.WarmupCosine(3e-4, ss.fraction(0.05), ss.fraction(1.0),
                                             end=1e-6)],
    "WarmupStableDecay": [lambda: ss.WarmupStableDecay(1e-3, ss.tokens(1e7, 1024),
                                                       ss.fraction(0.2), total=ss.fraction(1.0),
                                                       decay_shape="1-sqrt")],
    "InverseSqrt": [lambda: ss.InverseSqrt(1e-3, 4000), lambda: ss.InverseSqrt(1e-3, 0, 1000)],
    "Noam": [lambda: ss.Noam(512, 4000, scale=2.0)],
    "InversePower": [lambda: ss.InversePower(1e-3, 100, power=1.0)],
    "SqrtDecay": [lambda: ss.SqrtDecay(1e-3, 0.0, 500)],
    "KDecay": [lambda: ss.KDecay(1e-3, 1e-5, 500, k=2.0, shape="linear")],
    "TanhDecay": [lambda: ss.TanhDecay(1e-3, 0.0, 500, lower=-4.0, upper=4.0)],
    "Rex": [lambda: ss.Rex(1e-3, 0.0, ss.epochs(3))],
    "Cooldown": [lambda: ss.Cooldown(ss.Constant(1e-3), duration=100),
                 lambda: ss.Cooldown(ss.Warmup(ss.samples(6400)) >> ss.Constant(1e-3), 250,
                                     shape="cosine", end=1e-5, start_step=1200)],
    "BatchScaled": [lambda: ss.BatchScaled(ss.Warmup(100) >> ss.Constant(0.1), 256),
                    lambda: ss.BatchScaled(ss.Linear(0.1, 0.0, ss.samples(51_200)), 256,
                                           rule="sqrt", batch_size=1024)],
    "Extended": [lambda: ss.Extended(ss.Linear(1.0, 0.0, 4), ss.Linear(0.5, 0.0, 2), at=6),
                 lambda: ss.Extended(ss.WarmupCosine(1e-3, 100, 1000),
                                     ss.Warmup(50) >> ss.Cosine(5e-4, 0.0, ss.fraction(1.0)),
                                     at=1000)],
    "Planned": [lambda: ss.Planned(ss.Linear(1.0, 0.0, ss.fraction(0.5)), total_steps=10),
                lambda: ss.Planned(ss.Warmup(ss.epochs(1)) >> ss.Constant(0.1),
                                   steps_per_epoch=123456789),
                _planned_after_a_change,
                lambda: ss.Planned(ss.Warmup(ss.samples(64)) >> ss.Constant(0.1), 8, 48,
                                   batch_size=4),
                _planned_after_a_batch_size_change],
    "Scaled": [lambda: Scaled(ss.Cosine(1.0, 0.0, 100), multiplier=0.1),
               _scaled_reduced,
               lambda: Scaled(ss.Constant(0.5), state={"best": float("inf"), "wait": 2.0})],
}


def _comparable(config):
    """The config without a ``Scaled``'s plateau bookkeeping (see the module docstring)."""
    if isinstance(config, dict):
        out = {k: _comparable(v) for k, v in config.items()}
        if out.get("class_name") == "Scaled" and isinstance(out.get("config"), dict):
            out["config"] = {k: v for k, v in out["config"].items() if k != "state"}
        return out
    if isinstance(config, list):
        return [_comparable(v) for v in config]
    return config


def _cases():
    for name in sorted(SAMPLES):
        for i, build in enumerate(SAMPLES[name]):
            yield pytest.param(name, build, id=f"{name}-{i}")


def test_every_registered_schedule_class_has_a_sample():
    registered = registered_schedule_classes()
    missing = sorted(set(registered) - set(SAMPLES))
    assert not missing, (f"no sample instance in tests/test_spec_roundtrip.py SAMPLES for the "
                         f"registered schedule class(es) {missing}: add one (and make the "
                         "parser accept its repr)")
    stale = sorted(set(SAMPLES) - set(registered))
    assert not stale, f"SAMPLES names classes that are not registered schedules: {stale}"


def test_every_registered_schedule_class_can_be_called_in_an_expression():
    names = allowed_names()
    refused = sorted(name for name, cls in registered_schedule_classes().items()
                     if names.get(name) is not cls)
    assert not refused, f"the expression reader does not accept {refused}"


@pytest.mark.parametrize(("name", "build"), list(_cases()))
def test_repr_parses_back_to_an_equal_schedule(name, build):
    schedule = build()
    assert type(schedule) is registered_schedule_classes()[name], \
        f"the sample for {name} builds a {type(schedule).__name__}"
    text = repr(schedule)
    try:
        back = parse(text)
    except SpecError as exc:
        pytest.fail(f"{name}: ss.parse cannot read its repr {text!r}: {exc}")
    assert type(back) is type(schedule), text
    want = _comparable(keras.saving.serialize_keras_object(schedule))
    got = _comparable(keras.saving.serialize_keras_object(back))
    assert got == want, f"{name}: ss.parse(repr(s)) has another config; repr: {text}"
    assert repr(back) == text
    from stepsched.schedules.batch import has_batch_units

    if not schedule.is_symbolic and not has_batch_units(schedule):
        steps = np.arange(0, 3000, 7)
        np.testing.assert_array_equal(back.at(steps), schedule.at(steps))


def test_reprs_stay_short_and_readable():
    assert repr(ss.Extended(ss.Constant(1.0), ss.Linear(1.0, 0.0, 4), at=6)) == \
        "Extended(Constant(value=1), Linear(start=1, end=0, duration=4), at=6)"
    assert repr(ss.Cooldown(ss.Constant(1.0), 4, start_step=10)) == \
        "Cooldown(Constant(value=1), duration=4, start_step=10)"
    assert repr(ss.Cooldown(ss.Constant(1.0), 4, shape="linear")) == \
        "Cooldown(Constant(value=1), duration=4, shape='linear')"
    assert repr(Scaled(ss.Constant(1.0), multiplier=0.5)) == \
        "Scaled(Constant(value=1), multiplier=0.5)"
    assert repr(ss.Linear(1.0, 0.0, ss.samples(6400))) == \
        "Linear(start=1, end=0, duration=samples(6400))"
    assert repr(ss.Linear(1.0, 0.0, 10) * 0.5) == "Linear(start=1, end=0, duration=10) * 0.5"


@pytest.mark.parametrize(("text", "duration"), [
    ("samples(6400)", ss.samples(6400)),
    ("samples(n=6400)", ss.samples(6400)),
    ("tokens(1e6, 512)", ss.tokens(1e6, 512)),
    ("tokens(1000000, tokens_per_sample=512)", ss.tokens(1e6, 512)),
])
def test_samples_and_tokens_in_an_expression(text, duration):
    s = parse(f"Linear(1.0, 0.0, {text})")
    assert s._args["duration"] == duration


@pytest.mark.parametrize("text", [
    "Linear(1.0, 0.0, samples(-5))",
    "Linear(1.0, 0.0, tokens(1000))",  # tokens per sample missing
    "Linear(1.0, 0.0, samples)",
    "Linear(1.0, 0.0, Duration('samples', 5))",  # the class itself is not callable by name
    "Scaled(Constant(1.0), state={'best': 1.0})",  # no dict literals
])
def test_bad_durations_and_state_are_refused(text):
    with pytest.raises(SpecError):
        parse(text)


# ----------------------------------------------------------------- stepsched show
SAMPLES_SPEC = "Warmup(samples(6400)) >> Cosine(1e-3, 0.0, tokens(1_000_000, 125))"


def _show(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _rows(stdout: str) -> dict[str, list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("point"))
    rows = {}
    for ln in lines[start + 2:]:
        if not ln.strip():
            break
        cells = ln.split()
        n = len(cells) - (len(lines[start].split()) - 2)
        rows[" ".join(cells[:n])] = cells[n:]
    return rows


def test_show_resolves_samples_and_tokens_with_batch_size(capsys):
    code, out, err = _show(["show", SAMPLES_SPEC, "--batch-size", "64", "--ascii"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == repr(parse(SAMPLES_SPEC))  # the spec as written
    assert "batch_size=64" in out.splitlines()[1]
    rows = _rows(out)
    assert rows["join: Warmup -> Cosine"][0] == "100"  # 6400 samples / 64
    assert rows["end"][0] == "225"  # + 1e6 tokens / 125 per sample / 64


def test_show_with_samples_and_epochs(capsys):
    spec = "Warmup(samples(3200)) >> Cosine(1e-3, 0.0, epochs(2))"
    code, out, err = _show(["show", spec, "--batch-size", "32", "--steps-per-epoch", "50"],
                           capsys)
    assert code == 0, err
    assert _rows(out)["end"][0] == "200"


def test_show_without_batch_size_asks_for_it(capsys):
    code, out, err = _show(["show", SAMPLES_SPEC], capsys)
    assert code == 2 and out == ""
    assert err.startswith("stepsched show: error: ") and err.count("\n") == 1
    assert "--batch-size" in err


def test_show_fills_in_batch_scaled(capsys):
    spec = "BatchScaled(Constant(0.1, 100), base_batch_size=256, rule='sqrt')"
    code, out, err = _show(["show", spec, "--batch-size", "1024"], capsys)
    assert code == 0, err
    assert _rows(out)["start"][-1] == "0.2"
    code, out, err = _show(["show", spec], capsys)
    assert code == 2 and "--batch-size" in err
