"""The ``stepsched`` command: ``show`` (specs, hostile input), the process set-up (entry points,
backend choice, quiet start), ``demo`` end to end, the docs."""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import stepsched as ss
from stepsched import _startup
from stepsched.cli import build_parser, main
from stepsched.demo import CSV_COLUMNS
from stepsched.spec import MAX_DEPTH, SpecError, load_spec, parse_expression, parse_json
from tests.conftest import BACKEND

ROOT = Path(__file__).resolve().parent.parent
CLASSIC = "Warmup(epochs(2)) >> Exponential(1e-3, rate=0.96, every=1000)"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The key-point table printed by ``show``: label -> the other cells."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("point"))
    rows = {}
    for ln in lines[start + 2:]:
        if not ln.strip() or ln.startswith("wrote"):
            break
        cells = ln.split()
        label_len = len(cells) - (len(lines[start].split()) - 1 - 1)  # "learning rate" = 2 words
        rows[" ".join(cells[:label_len])] = cells[label_len:]
    return rows


# ----------------------------------------------------------------- show
@pytest.mark.backend_independent
def test_show_expression_prints_chart_table_and_writes_png(tmp_path, capsys):
    png = tmp_path / "classic.png"
    code, out, err = run(["show", CLASSIC, "--steps", "20000", "--steps-per-epoch", "500",
                          "--out", str(png)], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == repr(load_spec(CLASSIC))
    rows = table_rows(out)
    expected = load_spec(CLASSIC).resolve(steps_per_epoch=500)
    assert rows["start"] == ["0", "0.00", "0"]
    assert rows["join: Warmup -> Exponential"][:2] == ["1,000", "2.00"]
    assert rows["peak"][:2] == ["1,000", "2.00"]
    assert rows["end"][:2] == ["20,000", "40.00"]
    assert float(rows["end"][2]) == pytest.approx(float(expected.at(20000)), rel=1e-3)
    assert any(0x2800 <= ord(c) <= 0x28FF for c in out) or "*" in out  # the chart
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000


def test_show_json_file_round_trips_the_schedule(tmp_path, capsys):
    schedule = ss.Restarts(ss.Warmup(50) >> ss.Cosine(1e-2, 1e-4, 450), scale=0.5, limit=3)
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(keras.saving.serialize_keras_object(schedule)))
    loaded = load_spec(str(path))
    steps = np.arange(0, 1600)
    np.testing.assert_array_equal(loaded.at(steps), schedule.at(steps))
    code, out, err = run(["show", str(path), "--ascii"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == repr(schedule)
    rows = table_rows(out)
    assert rows["end"][0] == "1,500"  # the schedule's own duration
    assert all(ord(c) < 128 for c in out)


def test_show_accepts_inline_json_and_recipes(capsys):
    config = json.dumps(keras.saving.serialize_keras_object(ss.Linear(1.0, 0.5, 10)))
    assert run(["show", config], capsys)[0] == 0
    code, out, err = run(["show", "WarmupStableDecay(peak=1e-3, warmup=100, "
                                  "decay=fraction(0.2), total=fraction(1.0))", "--steps", "1000"],
                         capsys)
    assert code == 0, err
    assert table_rows(out)["peak"][0] == "100"


def test_show_reads_a_schedule_wrapped_by_plateau_reduction(tmp_path, capsys):
    scaled = ss.callbacks.Scaled(ss.Cosine(1.0, 0.0, 100), multiplier=0.1,
                                 state={"best": 0.5, "wait": 2.0})
    path = tmp_path / "scaled.json"
    path.write_text(json.dumps(_config(scaled)))
    np.testing.assert_allclose(load_spec(str(path)).at(range(101)), scaled.at(range(101)))
    code, out, err = run(["show", str(path)], capsys)
    assert code == 0, err
    assert table_rows(out)["start"][-1] == "0.1"


@pytest.mark.parametrize("expression", [
    "Warmup(100) >> Cosine(1e-3, 1e-5, 900)",
    "(Warmup(10, start=1e-5, shape='cosine') >> Constant(0.1, 20) >> Linear(0.1, 0.0, 70)) * 2",
    "Piecewise([10, 20], [1.0, 0.5, 0.25]) / 4 + 1e-4 - 1e-5",
    "Restarts(Linear(-1.0, 1.0, duration=steps(25)), limit=4, period_mult=1.0)",
    "Linear(1e-3, 0.0, 50) >> 1e-5",
    "Clip(Interpolate((0, 50, 100), (0.0, 1.0, 0.0), kind='cosine'), min=0.1, max=None)",
])
@pytest.mark.backend_independent
def test_expressions_build_the_same_schedule_as_python(expression):
    parsed = parse_expression(expression)
    namespace = {name: getattr(ss, name) for name in ss.__all__}
    direct = eval(expression, {"__builtins__": {}}, namespace)  # trusted test input
    steps = np.arange(0, 120)
    np.testing.assert_array_equal(parsed.at(steps), direct.at(steps))
    assert repr(parsed) == repr(direct)


HOSTILE_EXPRESSIONS = {
    "import": "__import__('os').system('echo owned')",
    "dunder-attribute": "().__class__.__bases__[0].__subclasses__()",
    "attribute": "Constant(1.0).at(5)",
    "subscript": "[Constant(1.0)][0]",
    "lambda": "Constant((lambda: 1)())",
    "comprehension": "Sequence([Constant(1.0, 1) for _ in range(3)])",
    "generator": "Sequence(Constant(1.0, 1) for _ in range(3))",
    "power": "Linear(1.0, 0.0, 10**10**10)",
    "eval": "eval('1')",
    "walrus": "(x := Constant(1.0))",
    "starred": "Constant(*[1.0])",
    "double-star": "Constant(**{'value': 1.0})",
    "dict": "{'a': 1}",
    "fstring": "f'{1}'",
    "list-repeat": "Constant([0.1] * 100000000)",
    "huge-int": "Linear(1.0, 0.0, " + "9" * 400 + ")",
    "deep-nesting": "Clip(" * (MAX_DEPTH + 5) + "Constant(1.0)" + ")" * (MAX_DEPTH + 5),
    "deep-parens": "(" * 500 + "1" + ")" * 500,
    "huge": "Constant(1.0)" + " + 1" * 5000,
    "syntax": "Warmup(10) >>",
    "not-a-schedule": "1e-3 * 2",
    "bad-value": "Linear(1.0, 0.0, -5)",
    "bad-kind": "Interpolate([0, 10], [1.0, 0.0], kind='spline')",
    "overflow": "Constant(1e308 * 10)",
    "nul": "Constant(1.0)\x00",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_EXPRESSIONS))
@pytest.mark.backend_independent
def test_hostile_or_bad_expressions_are_refused_in_one_line(name, capsys, tmp_path):
    spec = HOSTILE_EXPRESSIONS[name]
    with pytest.raises(SpecError):
        parse_expression(spec)
    code, out, err = run(["show", spec, "--steps", "100"], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("stepsched show: error: ") and err.count("\n") == 1
    assert "Traceback" not in err and len(err) < 400


def _config(schedule) -> dict:
    return keras.saving.serialize_keras_object(schedule)


def _hostile_json() -> dict[str, str]:
    good = _config(ss.Warmup(10) >> ss.Linear(1.0, 0.0, 90))
    text = json.dumps(good)
    lambda_layer = {"module": "keras.layers", "class_name": "Lambda",
                    "config": {"function": {"class_name": "__lambda__",
                                            "config": {"code": "print('owned')"}}},
                    "registered_name": None}
    spoofed = dict(good, module="os")
    nested_foreign = json.loads(text)
    nested_foreign["config"]["pieces"][1] = lambda_layer
    deep = {"module": "stepsched.schedules.compose", "class_name": "Sequence",
            "registered_name": "stepsched>Sequence", "config": {"pieces": [1.0]}}
    for _ in range(MAX_DEPTH + 5):
        deep = {"module": "stepsched.schedules.compose", "class_name": "Sequence",
                "registered_name": "stepsched>Sequence", "config": {"pieces": [deep]}}
    return {
        "unknown-class": text.replace('"Linear"', '"Frobnicate"'),
        "keras-lambda-layer": json.dumps(lambda_layer),
        "keras-lambda-nested": json.dumps(nested_foreign),
        "spoofed-module": json.dumps(spoofed),
        "spoofed-registered-name": text.replace('"stepsched>Linear"', '"keras>Linear"'),
        "truncated": text[: len(text) // 2],
        "not-an-object": "[1, 2, 3]",
        "nan": text.replace("1.0", "NaN", 1),
        "bad-value": text.replace('"end": 0.0', '"end": "zero"'),
        "unknown-argument": text.replace('"end": 0.0', '"end": 0.0, "evil": 1'),
        "deep": json.dumps(deep),
        "duration-only": json.dumps(_config(ss.epochs(2))),
        "nested-plain-object": text.replace('"end": 0.0', '"end": {"a": {"b": 1}}'),
        "huge": '{"class_name": "Constant", "pad": "' + "x" * 2_000_000 + '"}',
    }


@pytest.mark.parametrize("name", sorted(_hostile_json()))
def test_hostile_or_bad_json_is_refused_in_one_line(name, tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(_hostile_json()[name])
    with pytest.raises(SpecError):
        parse_json(path.read_text())
    code, out, err = run(["show", str(path), "--steps", "100"], capsys)
    assert code == 2
    assert err.startswith("stepsched show: error: ") and err.count("\n") == 1
    assert "owned" not in out + err and "Traceback" not in err


@pytest.mark.backend_independent
def test_unresolved_or_open_ended_specs_name_the_missing_option(capsys):
    code, _, err = run(["show", CLASSIC, "--steps", "5000"], capsys)
    assert code == 2 and "--steps-per-epoch" in err
    code, _, err = run(["show", "Exponential(1e-3, rate=0.96)"], capsys)
    assert code == 2 and "--steps" in err
    code, _, err = run(["show", "Warmup(10)", "--steps", "100"], capsys)
    assert code == 2 and "Warmup(...) >> schedule" in err
    code, _, err = run(["show", "Constant(1.0)", "--steps", "-3"], capsys)
    assert code == 2 and "--steps" in err
    code, _, err = run(["show", str(ROOT / "no-such-file.json"), "--steps", "10"], capsys)
    assert code == 2  # not a file: read as an expression, which it is not


# ----------------------------------------------------------------- the command's process
SHOW = ["show", "Warmup(100) >> Cosine(1e-3, 1e-5, 900)", "--steps", "1000"]


def _command_env(**extra) -> dict:
    """The environment of a user's shell: no test-suite log settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "PYTEST_CURRENT_TEST")}
    return dict(env, **extra)


def _native_lines(stderr: str) -> list[str]:
    """Lines of absl / TensorFlow C++ logging (start-up noise) in ``stderr``."""
    return [ln for ln in stderr.splitlines()
            if _startup._LOG_LINE.match(ln) or "absl::InitializeLog" in ln
            or ln.startswith("To enable the following instructions")]


def _console_script() -> Path:
    script = Path(sys.executable).parent / ("stepsched.exe" if os.name == "nt" else "stepsched")
    if not script.exists():
        pytest.skip("the stepsched console script is not installed next to this Python")
    return script


@functools.cache
def _python_m_show() -> tuple[subprocess.CompletedProcess, set[str]]:
    """``python -X importtime -m stepsched show ...`` with the run's backend set by the
    user: the process and the modules it imported (one process serves the two tests that
    read it). ``-X importtime`` only adds its ``import time:`` lines to stderr."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "stepsched", *SHOW],
                          capture_output=True, text=True, timeout=180,
                          env=_command_env(KERAS_BACKEND=BACKEND))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    imported = {ln.split("|")[-1].strip() for ln in lines if ln.startswith("import time:")}
    stderr = "".join(f"{ln}\n" for ln in lines if not ln.startswith("import time:"))
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, stderr), imported


def test_keras_backend_set_by_the_user_is_kept_for_show():
    _, imported = _python_m_show()
    assert f"keras.src.backend.{BACKEND}" in imported
    others = set(_startup.BACKENDS) - {BACKEND}
    assert not {f"keras.src.backend.{b}" for b in others} & imported


@pytest.mark.parametrize("entry", ["python -m stepsched", "stepsched"])
def test_both_entry_points_show_the_same_and_print_no_startup_lines(entry, capsys):
    code, expected, _ = run(SHOW, capsys)  # in this process
    assert code == 0
    if entry == "stepsched":
        proc = subprocess.run([str(_console_script()), *SHOW], capture_output=True, text=True,
                              timeout=180, env=_command_env(KERAS_BACKEND=BACKEND))
    else:
        proc, _ = _python_m_show()  # stderr without its import-time lines
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == expected
    assert proc.stderr == ""  # no TensorFlow, absl or oneDNN lines on any backend


@pytest.mark.backend_independent
def test_show_without_keras_backend_uses_the_lightest_installed_backend(capsys):
    # -X importtime lists every module the process imports, on stderr
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "stepsched", *SHOW],
                          capture_output=True, text=True, timeout=180, env=_command_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {ln.split("|")[-1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    installed = [b for b in _startup.LIGHTEST_FIRST if importlib.util.find_spec(b) is not None]
    lightest, heavier = installed[0], installed[1:]
    assert f"keras.src.backend.{lightest}" in imported  # the backend Keras loaded
    for name in heavier:
        assert name not in imported, f"{name} imported although {lightest} is installed"
    assert proc.stdout == run(SHOW, capsys)[1]  # same output as on this run's backend
    assert _native_lines(proc.stderr) == []


def test_python_dash_m_reports_usage_errors_like_the_command(capsys):
    proc = subprocess.run([sys.executable, "-m", "stepsched"], capture_output=True, text=True,
                          timeout=180, env=_command_env(KERAS_BACKEND=BACKEND))
    assert proc.returncode == 2 and "usage: stepsched" in proc.stderr
    assert _native_lines(proc.stderr) == []
    # python -m exits with what main() returns (above: argparse's usage error), so a bad
    # spec is main()'s one-line error and code 2 (the start-up adds no line to stderr:
    # test_both_entry_points_show_the_same_and_print_no_startup_lines)
    code, out, err = run([], capsys)
    assert code == 2 and out == "" and "usage: stepsched" in err
    code, out, err = run(["show", "Linear(1.0, 0.0, -5)"], capsys)
    assert code == 2 and out == "" and err.startswith("stepsched show: error: ")
    assert err.count("\n") == 1


@pytest.mark.backend_independent
def test_command_is_recognised_only_when_it_is_the_program():
    py = "/usr/bin/python3"
    script = "/venv/bin/stepsched"
    args = ["show", "X", "--steps", "5"]
    assert _startup.command_args(["-m", *args], [py, "-m", "stepsched", *args], None) == args
    assert _startup.command_args(["-m", *args], [py, "-X", "importtime", "-mstepsched", *args],
                                 None) == args
    assert _startup.command_args(["-m", *args], [py, "-m", "stepsched.cli", *args], None) == args
    assert _startup.command_args([script, *args], [py, script, *args], script) == args
    # other programs that import stepsched
    assert _startup.command_args(["-m", *args], [py, "-m", "pytest", *args], None) is None
    assert _startup.command_args(["-c", "-m", "stepsched"],
                                 [py, "-c", "import stepsched", "-m", "stepsched"], None) is None
    assert _startup.command_args(["/x/pytest", *args], [py, "/x/pytest", *args],
                                 "/x/pytest") is None
    assert _startup.command_args(["/x/stepsched", *args], [py, "/y/run.py"], "/y/run.py") is None
    assert _startup.command_args([], [py], None) is None


@pytest.mark.parametrize("argv, value", [
    (["demo", "--backend", "torch"], "torch"),
    (["demo", "--backend=jax", "--epochs", "3"], "jax"),
    (["demo", "--back", "tensorflow"], "tensorflow"),  # argparse accepts unique prefixes
    (["demo", "--batch-size", "4"], None),
    (["demo", "--backend"], None),
])
@pytest.mark.backend_independent
def test_demo_backend_option_is_read_before_keras_loads(argv, value):
    assert _startup._option(argv, "--backend") == value
    parsed = None
    try:
        parsed = build_parser().parse_args(argv).backend
    except SystemExit:
        pass
    if value is not None:
        assert parsed == value  # the same reading as the command's own parser


@pytest.mark.backend_independent
def test_native_start_up_lines_are_dropped_and_everything_else_kept():
    captured = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796228117.312938    5525 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1796228117.428467    5525 cpu_feature_guard.cc:227] This TensorFlow binary "
        "is optimized to use available CPU instructions.\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.\n"
        "/x/y.py:3: UserWarning: something the user should see\n"
        "W0000 00:00:1796228117.5    5525 gpu_device.cc:2341] Cannot dlopen some GPU libraries.\n"
        "E0000 00:00:1796228117.6    5525 cuda_dnn.cc:8310] Unable to register cuDNN factory\n"
        "To enable the following instructions: kept, it follows a kept line\n")
    kept = _startup.filter_native_lines(captured, min_level=2).splitlines()
    assert kept == ["/x/y.py:3: UserWarning: something the user should see",
                    "E0000 00:00:1796228117.6    5525 cuda_dnn.cc:8310] Unable to register "
                    "cuDNN factory",
                    "To enable the following instructions: kept, it follows a kept line"]
    assert _startup.filter_native_lines(captured, min_level=0).count("\n") == 7


# ----------------------------------------------------------------- demo
def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out_dir = tmp_path / "demo"
    # --backend wins over KERAS_BACKEND; the command's own set-up keeps TensorFlow quiet
    other = next(b for b in _startup.BACKENDS if b != BACKEND)
    env = _command_env(KERAS_BACKEND=other, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-m", "stepsched", "demo", "--out", str(out_dir),
                           "--epochs", "2", "--seed", "3", "--backend", BACKEND],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"backend {BACKEND}" in proc.stdout
    assert _native_lines(proc.stderr) == [], proc.stderr[-3000:]
    assert "held-out accuracy" in proc.stdout and "suggested rate" in proc.stdout
    png = out_dir / "demo.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20_000

    rows = _read_csv(out_dir / "batches.csv")
    steps_per_epoch = 43  # ceil(1347 / 32): 75 % of the 1797 digits, batch 32
    for run_name in ("per-epoch", "per-batch"):
        mine = [r for r in rows if r["run"] == run_name]
        assert [int(r["step"]) for r in mine] == list(range(2 * steps_per_epoch))
        assert all(np.isfinite(float(r["loss"])) and float(r["loss"]) >= -1e-4 for r in mine)
        # the running mean is the size-weighted mean of the recovered batch losses
        first_epoch = mine[:steps_per_epoch]
        sizes = np.array([32] * (steps_per_epoch - 1) + [1347 - 32 * (steps_per_epoch - 1)])
        losses = np.array([float(r["loss"]) for r in first_epoch])
        assert float(first_epoch[-1]["loss_running_mean"]) == pytest.approx(
            float(np.sum(sizes * losses) / sizes.sum()), rel=1e-3)
    per_epoch = [float(r["learning_rate"]) for r in rows if r["run"] == "per-epoch"]
    per_batch = [float(r["learning_rate"]) for r in rows if r["run"] == "per-batch"]
    # per-epoch: constant within each epoch; per-batch: a linear warmup in epoch 1
    assert len(set(per_epoch[:steps_per_epoch])) == 1
    assert len(set(per_epoch[steps_per_epoch:])) == 1
    peak = max(per_batch)
    np.testing.assert_allclose(per_batch[:steps_per_epoch],
                               peak * np.arange(steps_per_epoch) / steps_per_epoch,
                               rtol=1e-4, atol=1e-9)

    # the same seed gives the same run, here in this process
    again = tmp_path / "again"
    assert main(["demo", "--out", str(again), "--epochs", "2", "--seed", "3"]) == 0
    assert _read_csv(again / "batches.csv") == rows


@pytest.mark.backend_independent
def test_demo_rejects_bad_arguments(capsys):
    code, _, err = run(["demo", "--epochs", "1"], capsys)
    assert code == 2 and "--epochs" in err
    code, _, err = run(["demo", "--backend", "theano"], capsys)
    assert code == 2 and "invalid choice" in err


# ----------------------------------------------------------------- docs
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
@pytest.mark.skipif(BACKEND != "tensorflow", reason="the docs build once, on the TF run")
def test_docs_build_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").stat().st_size > 0
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "Warmup" in api and "plot_schedule" in api


def _guide() -> str:
    return (ROOT / "docs" / "guide" / "cli.md").read_text(encoding="utf-8")


@pytest.mark.backend_independent
def test_guide_code_runs():
    import re

    blocks = re.findall(r"```python\n(.*?)```", _guide(), flags=re.S)
    assert blocks
    namespace: dict = {"__name__": "guide"}
    for block in blocks:
        exec(compile(block, "docs/guide/cli.md", "exec"), namespace)  # noqa: S102
    assert namespace["lr"].resolve(total_steps=1000).at(0) == 0.0


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.backend_independent
def test_guide_show_output_is_what_show_prints(index, capsys):
    import re
    import shlex

    examples = re.findall(r"```text\n\$ (stepsched show .*?)\n(.*?)```", _guide(), flags=re.S)
    command, shown = examples[index]
    code, out, err = run(shlex.split(command)[1:], capsys)
    assert code == 0, err
    printed = [ln.rstrip() for ln in out.splitlines()]
    shown = [ln.rstrip() for ln in shown.splitlines()]
    if "..." in shown:  # an excerpt: the lines after "..." end the output
        shown = shown[shown.index("...") + 1:]
        printed = printed[-len(shown):]
    assert printed == shown
