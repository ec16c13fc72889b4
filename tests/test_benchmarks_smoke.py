"""The benchmark's quick mode runs end to end on the current backend and writes valid JSON.

Nothing here is about speed: the numbers of a smoke run are meaningless. What
is checked is that every part ran and reported, and that the applied-rate
probe tells an exact schedule from the per-batch callback at
``steps_per_execution > 1``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

from tests.conftest import BACKEND

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
import workloads  # noqa: E402

VARIANTS = {"constant", "keras_exponential", "callback", "ss_exponential", "ss_warmup_cosine",
            "ss_interpolate50", "ss_sequence_restarts", "keras_piecewise", "ss_piecewise"}
STEPSCHED = {v for v in VARIANTS if v.startswith("ss_")}
# the README's paths with stepsched callbacks, timed at steps_per_execution=1
CALLBACK_VARIANTS = {"seed_bare", "empty_batch_hook", "seed_logger_batch", "seed_logger_read",
                     "seed_logger_epoch",
                     "seed_plateau_batch", "seed_plateau_epoch", "seed_logger_plateau", "seed_plan",
                     "batch_scheduler"}
EVAL_ROWS = {"seed", "warmup_cosine", "one_cycle", "sequence", "restarts", "piecewise"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, worker_id):
    """The quick benchmark run, once a session: the first pytest-xdist worker here runs it,
    one that needs it too (the module's tests split between workers) waits for its files."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the session's folder, above each worker's own
    folder = shared / "bench-quick"
    out, status = folder / "quick.json", folder / "status.json"
    try:
        folder.mkdir()  # atomic: only one worker gets to make it
    except FileExistsError:
        deadline = time.monotonic() + 660
        while not status.exists():
            assert time.monotonic() < deadline, "the quick run of another worker never ended"
            time.sleep(0.5)
    else:
        # host evaluation (NumPy vs optax vs torch) does not depend on the backend: run it once
        host = [] if BACKEND == "jax" else ["--skip-host"]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--backends",
                               BACKEND, "--out", str(out), *host],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        written = folder / "status.tmp"
        written.write_text(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout,
                                       "stderr_tail": proc.stderr[-3000:]}))
        written.rename(status)  # atomic: a waiting worker reads all of it or nothing
    run = json.loads(status.read_text())
    assert run["returncode"] == 0, run["stderr_tail"]
    return json.loads(out.read_text()), run["stdout"]


def test_machine_info(quick_run):
    results, _ = quick_run
    assert results["quick"] is True
    machine = results["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["date"]
    for package in ("python", "keras", "numpy"):
        assert machine["versions"][package]
    assert list(results["backends"]) == [BACKEND]


def test_step_time_and_trace(quick_run):
    results, _ = quick_run
    res = results["backends"][BACKEND]
    assert res["backend"] == BACKEND
    spes = {cfg["steps_per_execution"] for cfg in res["step_time"]}
    assert spes == {1}  # quick mode times steps_per_execution=1, where the callbacks run
    for cfg in res["step_time"]:
        assert set(cfg["variants"]) == VARIANTS | CALLBACK_VARIANTS
        for v in cfg["variants"].values():
            assert v["step_ms"] > 0 and math.isfinite(v["step_ratio"])
            assert v["first_fit_s"] > 0 and math.isfinite(v["trace_s"])
            assert len(v["step_ratio_paired"]) == cfg["repeats"]
            assert v["step_ratio_paired_q25"] <= v["step_ratio_paired_median"]
            assert v["step_ratio_paired_median"] <= v["step_ratio_paired_q75"]
        assert cfg["variants"]["constant"]["step_ratio"] == 1.0


def test_per_evaluation_cost(quick_run):
    results, stdout = quick_run
    res = results["eval"][BACKEND]
    e = res["eval"]
    assert set(e["rows"]) == EVAL_ROWS
    for name, row in e["rows"].items():
        assert row["ss"]["us_min"] > 0 and row["ss"]["us_min"] <= row["ss"]["us_median"]
        assert (row["keras"] is None) == (name in ("one_cycle", "sequence"))
        if BACKEND == "torch":
            assert row["ss"]["graph_ops"] is None
            assert row["ss"]["syncs_per_call"] == 0, name  # no host read per evaluation
        else:
            assert row["ss"]["graph_ops"] > 0 and row["ss"]["syncs_per_call"] is None
    if BACKEND == "tensorflow":
        rows = res["apply"]["rows"]
        assert rows["constant"]["extra_ops_over_constant"] == 0
        # the schedule is in the graph, built once: a constant rate is read per variable,
        # so a cheap schedule's apply can have fewer operations than a constant rate's
        ss_row = rows["ss_warmup_cosine"]
        assert ss_row["one_evaluation_ops"] > 0
        assert ss_row["graph_ops"] != rows["constant"]["graph_ops"]
        assert ss_row["extra_ops_over_constant"] <= ss_row["one_evaluation_ops"]
    else:
        assert res["apply"] is None
    if BACKEND == "torch":
        assert set(res["training_syncs"]) == set(workloads.every_class())
    assert "**One evaluation on" in stdout


def test_variable_groups_cost(quick_run):
    results, stdout = quick_run
    g = results["eval"][BACKEND]["groups"]
    assert set(g["rows"]) == {"keras_constant", "keras_cosine", "ss_single", "ss_groups_1",
                              "ss_groups_4", "ss_groups_16"}
    assert g["variables"] == 42
    for row in g["rows"].values():
        assert 0 < row["us_min"] <= row["us_median"]
    assert g["rows"]["keras_constant"]["ratio_to_keras_constant_paired_median"] == 1.0
    if BACKEND == "torch":
        assert all(row["ops"] is None for row in g["rows"].values())
        assert all(row["syncs_per_call"] == 0 for k, row in g["rows"].items()
                   if k.startswith("ss_"))
    else:
        assert all(row["ops"] > 0 for row in g["rows"].values())
    assert "**Variable groups**" in stdout


def test_applied_rate_errors(quick_run):
    results, _ = quick_run
    rows = results["backends"][BACKEND]["errors"]
    by_key = {(r["variant"], r["steps_per_execution"]): r for r in rows}
    spes = [1] if BACKEND == "torch" else [16]  # quick mode probes the largest chunk only
    assert set(by_key) == {(v, s) for v in VARIANTS for s in spes}
    for spe in spes:
        for name in STEPSCHED:
            assert by_key[(name, spe)]["sum_rel_error"] < 1e-5, (name, spe)
    if BACKEND != "torch":
        # the callback runs once per chunk: its rate lags inside every chunk
        assert by_key[("callback", 16)]["sum_rel_error"] > 1e-2


def test_finder_and_targets(quick_run):
    results, stdout = quick_run
    finder = results["backends"][BACKEND]["finder"]
    assert finder["available"] in (True, False)
    if finder["available"]:
        assert finder["find_lr_s"] > 0 and finder["steps_done"] == finder["steps"]
    else:
        assert finder["note"]
    for target in results["targets"]:
        assert set(target) == {"target", "where", "value", "pass"}
    assert "| variant |" in stdout and "**Targets**" in stdout
    if BACKEND == "jax":
        rows = results["host"]["rows"]
        assert {"constant"} | STEPSCHED == set(rows)
        for r in rows.values():
            assert r["ss_at_s"] > 0 and r["optax_jit_s"] > 0 and r["torch_extrapolated_s"] > 0
            assert r["max_rel_diff_vs_optax"] < 1e-4  # the optax equivalents are equivalent
    else:
        assert results["host"] is None


def test_write_readme_replaces_only_between_markers(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import run
    finally:
        sys.path.remove(str(BENCH))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n\nintro\n\n{run.START}\nold\n{run.END}\n\nafter\n")
    run.write_readme("| new |", readme)
    assert readme.read_text() == (f"# x\n\n## Performance\n\nintro\n\n{run.START}\n| new |\n"
                                  f"{run.END}\n\nafter\n")
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        run.write_readme("| new |", readme)


# ----------------------------------------------------------------- host syncs (torch)
needs_torch = pytest.mark.skipif(BACKEND != "torch", reason="host syncs are counted on torch")


@needs_torch
def test_every_schedule_class_is_in_the_sync_check():
    missing = workloads.schedule_classes() - set(workloads.every_class())
    assert not missing, f"add {sorted(missing)} to benchmarks/workloads.py every_class()"
    assert set(workloads.every_class()) <= workloads.schedule_classes()


@needs_torch
@pytest.mark.parametrize("name", sorted(workloads.every_class()))
def test_no_host_sync_in_training_steps(name):
    """Real AdamW training steps read nothing on the host beyond a constant rate's steps."""
    schedule = workloads.every_class()[name]
    assert workloads.training_syncs(schedule, n_steps=6) == 0


@needs_torch
def test_sync_counter_sees_a_schedule_that_reads_the_step():
    class HostRead(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return 1e-3 * 0.99 ** int(step)  # Tensor.__int__: one host read per evaluation

    # AdamW evaluates the rate twice per step on torch (once more for weight decay)
    assert workloads.training_syncs(HostRead(), n_steps=6) >= 6


@needs_torch
def test_gpu_check_without_a_gpu_says_so_and_exits_cleanly():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: run benchmarks/gpu_check.py itself")
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_check.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no CUDA GPU here" in proc.stdout and "Nothing was checked" in proc.stdout
    assert "Traceback" not in proc.stderr
