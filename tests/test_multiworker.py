"""Beyond one process: two training processes on localhost, and one of them killed.

Each case starts two processes of ``tests/multiworker_job.py`` (see its
docstring for the probe) that train together over loopback ports:
``tf.distribute.MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` on
TensorFlow, JAX's distributed runtime through ``keras.distribution.initialize``
with ``DataParallel`` on JAX. The torch backend has neither (Keras has no
multi-process training there), so this module skips on it.

What is checked, on every process:

- the rate applied at every step (read back from the weights) is the
  schedule's, planned from ``epochs(...)``/``fraction(...)`` identically on
  each process, times the plateau multiplier in force;
- ``LearningRateLogger`` writes the same rates on each process;
- ``ReduceLROnPlateau`` reduces at the same steps on each process, on the
  loss of the global batch: each process's own sample has a loss that would
  lead it elsewhere (process 0's never stops improving);
- everything equals an uninterrupted run of the same global batches in one
  process (the reference, run here);
- a process sent SIGKILL mid-epoch, then the whole job restarted with
  ``BackupAndRestore``, continues the rates and the plateau state (multiplier,
  best, patience and cooldown counters) exactly as the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import multiworker_job as job
from tests.conftest import BACKEND

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide" / "distributed.md"
TIMEOUT = 240  # seconds for one job; a healthy one takes a few on an idle machine
RTOL = 1e-6  # float32 rounding of one formula on two evaluators (tests/test_exactness.py)

ENGINES = {"tensorflow": "mwms", "jax": "jax"}
pytestmark = pytest.mark.skipif(
    BACKEND not in ENGINES,
    reason="Keras has no multi-process training on the torch backend (tf.distribute is "
           "TensorFlow's, keras.distribution's multi-process runtime is JAX's)")
SPE = {"tensorflow": [1], "jax": [1, 3]}  # tf.distribute: see test_mirrored_multi_step_*


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on the loopback interface."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def job_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CONFIG", "XLA_FLAGS", "PYTEST_XDIST_WORKER")}
    env.update(KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
               PYTHONHASHSEED="0")
    return env


class Job:
    """The two processes of one training job; logs and results under ``folder``."""

    def __init__(self, folder: Path, **config):
        folder.mkdir(parents=True)
        self.folder = folder
        ports = free_ports(2)
        self.logs = [folder / f"process{i}.log" for i in range(2)]
        self.outs = [folder / f"process{i}.json" for i in range(2)]
        self.procs = []
        for i in range(2):
            cfg = dict(engine=ENGINES[BACKEND], index=i, ports=ports, out=str(self.outs[i]),
                       **{"spe": SPE[BACKEND], **config})
            with open(self.logs[i], "w") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, str(ROOT / "tests" / "multiworker_job.py"), json.dumps(cfg)],
                    cwd=ROOT, env=job_env(), stdout=log, stderr=subprocess.STDOUT))
        self.deadline = time.monotonic() + TIMEOUT

    def tail(self) -> str:
        return "\n".join(f"--- process {i}:\n{log.read_text()[-3000:]}"
                         for i, log in enumerate(self.logs))

    def wait(self, i: int) -> int:
        try:
            return self.procs[i].wait(timeout=max(self.deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"process {i} ran past {TIMEOUT} s\n{self.tail()}")

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def results(self) -> list[dict]:
        codes = [self.wait(i) for i in range(2)]
        assert codes == [0, 0], self.tail()
        return [json.loads(out.read_text()) for out in self.outs]

    def steps_seen(self, i: int) -> list[int]:
        """Steps that process ``i`` reported after its batch hooks."""
        return [json.loads(line)["step"] for line in self.logs[i].read_text().splitlines()
                if line.startswith('{"step"')]


def reference(spe: int) -> dict:
    """The same global batches in this one process, uninterrupted, no distribution."""
    return json.loads(json.dumps(job.train(spe)))  # JSON round trip: the same types


def rates(run: dict) -> np.ndarray:
    """Rates applied at steps 0..N-1 (the one-hot kernel)."""
    return np.asarray(run["kernel"])


def multipliers(run: dict) -> np.ndarray:
    """The plateau multiplier in force at each step 0..N-1, from the reductions made."""
    m = np.ones(job.N)
    for step, value in run["reductions"]:
        m[step:] = value
    return m


def check_run(run: dict, spe: int) -> None:
    """One process's run on its own: planned, applied and logged rates agree."""
    expected = job.schedule().resolve(steps_per_epoch=job.STEPS_PER_EPOCH,
                                      total_steps=job.N).at(range(job.N))
    assert run["context"] == [job.STEPS_PER_EPOCH, job.N]
    np.testing.assert_allclose(run["planned"], expected, rtol=RTOL)
    assert run["iterations"] == job.N  # one increment per global batch
    assert run["reductions"], "the plateau callback must reduce in this run"
    np.testing.assert_allclose(rates(run), expected * multipliers(run), rtol=RTOL)
    rows = run["rows"][1:]  # after each batch hook (once per chunk of spe steps)
    assert [r["step"] for r in rows] == list(range(spe, job.N + 1, spe))
    applied = rates(run)
    np.testing.assert_allclose([r["lr"] for r in rows], [applied[r["step"] - 1] for r in rows],
                               rtol=RTOL)
    # v grows by the applied rate each step; the loss in the logs is that of the
    # global batch, -v (a running mean over the epoch's batches)
    np.testing.assert_allclose([r["v"] for r in rows],
                               [applied[:r["step"]].sum() for r in rows], rtol=RTOL)
    if spe == 1:
        vs = [0.0] + [r["v"] for r in rows]
        for r in rows:
            first = (r["step"] - 1) // job.STEPS_PER_EPOCH * job.STEPS_PER_EPOCH
            np.testing.assert_allclose(r["loss"], -np.mean(vs[first:r["step"]]), rtol=1e-5,
                                       atol=1e-7)


def test_two_processes_apply_and_decide_identically(tmp_path):
    """Both processes: exact rates, the same plan, log and reductions, equal to one process."""
    out = Job(tmp_path / "job").results()
    assert [o["replicas"] for o in out] == [2, 2]
    for spe in SPE[BACKEND]:
        ref = reference(spe)
        check_run(ref, spe)
        for i, o in enumerate(out):
            run = o["runs"][str(spe)]
            check_run(run, spe)
            assert run["reductions"] == ref["reductions"], f"process {i}, spe={spe}"
            np.testing.assert_allclose(rates(run), rates(ref), rtol=RTOL)
            assert [r["multiplier"] for r in run["rows"]] == [
                r["multiplier"] for r in ref["rows"]]
            for r, want in zip(run["rows"], ref["rows"], strict=True):
                assert r["state"] == pytest.approx(want["state"], rel=RTOL), (i, r, want)
        # what each process logged is the same, value for value
        a, b = (o["runs"][str(spe)]["rows"] for o in out)
        assert [(r["lr"], r["loss"], r["multiplier"]) for r in a] == [
            (r["lr"], r["loss"], r["multiplier"]) for r in b]


KILL_AT = 10  # mid-epoch (epoch 1 is steps 6..11), after the backup at step 8


def test_killed_process_resumes_exactly(tmp_path):
    """SIGKILL to process 1 mid-epoch; the job restarts from BackupAndRestore's files and
    continues the rates and plateau state of an uninterrupted run, step for step."""
    backup = tmp_path / "backup"
    killed = Job(tmp_path / "killed", spe=[1], backup=str(backup), kill_at=KILL_AT)
    try:
        assert killed.wait(1) == -signal.SIGKILL, killed.tail()
        # process 0 cannot finish without its peer; the job is restarted, as a scheduler would
        deadline = time.monotonic() + 60
        while KILL_AT not in killed.steps_seen(0) and time.monotonic() < deadline:
            if killed.procs[0].poll() is not None:
                break
            time.sleep(0.2)
    finally:
        killed.kill()
    assert killed.steps_seen(1)[-1] == KILL_AT, killed.tail()
    assert max(killed.steps_seen(0)) <= KILL_AT, "process 0 cannot go on alone"
    for i in range(2):
        meta = json.loads((backup / f"process{i}" / "training_metadata.json").read_text())
        assert meta["epoch"] == 1  # the backup was made mid-epoch
    resumed = Job(tmp_path / "resumed", spe=[1], backup=str(backup)).results()

    ref = reference(1)
    ref_rows = {r["step"]: r for r in ref["rows"]}
    applied_ref = rates(ref)
    last = job.SAVE_FREQ * (KILL_AT // job.SAVE_FREQ)  # the step of the last backup: 8
    for i, o in enumerate(resumed):
        rows = o["runs"]["1"]["rows"]
        # restored: v, multiplier and plateau state as the uninterrupted run had them
        assert rows[0]["step"] == last, f"process {i}"
        # Keras restarts the interrupted epoch from its first batch with the restored step,
        # so the resumed run makes steps 8..19 (the uninterrupted one ends at 18)
        assert [r["step"] for r in rows] == list(range(last, last + 2 * job.STEPS_PER_EPOCH + 1))
        for r in rows:
            if r["step"] not in ref_rows:
                continue
            want = ref_rows[r["step"]]
            assert r["v"] == pytest.approx(want["v"], rel=RTOL), (i, r, want)
            assert r["multiplier"] == want["multiplier"], (i, r, want)
            assert r["state"].keys() == want["state"].keys()
            for key, value in want["state"].items():
                assert r["state"][key] == pytest.approx(value, rel=RTOL), (i, key, r, want)
            if r["lr"] is not None:
                assert r["lr"] == pytest.approx(applied_ref[r["step"] - 1], rel=RTOL)
        # the steps past the uninterrupted run's end follow the same plan and multiplier
        planned = job.schedule().resolve(steps_per_epoch=job.STEPS_PER_EPOCH,
                                         total_steps=job.N)
        for prev, r in zip(rows, rows[1:], strict=False):
            assert r["v"] - prev["v"] == pytest.approx(
                float(planned.at(r["step"] - 1)) * prev["multiplier"], rel=1e-5)
    a, b = (o["runs"]["1"]["rows"] for o in resumed)
    assert [(r["lr"], r["multiplier"], r["state"]) for r in a] == [
        (r["lr"], r["multiplier"], r["state"]) for r in b]


# ----------------------------------------------------------------- the guide's code
def guide_blocks() -> dict[str, str]:
    """The guide's titled Python blocks (```` ```python title="name" ````), by title."""
    blocks, title, current = {}, None, []
    for line in GUIDE.read_text().splitlines():
        match = re.fullmatch(r'```python title="([^"]+)"', line.strip())
        if match:
            title, current = match.group(1), []
        elif line.strip() == "```" and title is not None:
            blocks[title] = "\n".join(current) + "\n"
            title = None
        elif title is not None:
            current.append(line)
    return blocks


RUN_BLOCKS = """
import json, sys
out, scope = [], {}
for code in json.loads(sys.stdin.read()):
    try:
        exec(compile(code, "<guide>", "exec"), scope)
        out.append(None)
    except Exception as err:
        out.append([type(err).__name__, str(err)])
print(json.dumps(out))
"""


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute is TensorFlow only")
def test_mirrored_multi_step_fails_in_keras_and_stepsched_says_why():
    """The guide's reproduction: Keras 3.15 fails on its own under MirroredStrategy with
    steps_per_execution > 1; with a stepsched callback the message names the cause.
    When Keras fixes its loop, the first assertion fails: then lift check_strategy."""
    blocks = guide_blocks()
    code = [blocks["mirrored_keras.py"], blocks["mirrored_stepsched.py"]]
    result = subprocess.run([sys.executable, "-c", RUN_BLOCKS], input=json.dumps(code),
                            capture_output=True, text=True, cwd=ROOT, env=job_env(),
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    keras_error, stepsched_error = json.loads(result.stdout.strip().splitlines()[-1])
    assert keras_error is not None and keras_error[0] == "InvalidArgumentError", keras_error
    assert "You must feed a value for placeholder tensor" in keras_error[1]
    assert stepsched_error is not None and stepsched_error[0] == "ValueError", stepsched_error
    for words in ("steps_per_execution=2", "MirroredStrategy", "2 replicas",
                  "steps_per_execution=1"):
        assert words in stepsched_error[1]


def test_guide_shows_the_code_the_jobs_run():
    """The guide's set-up blocks are the job's own functions, verbatim (the jobs run them)."""
    blocks = guide_blocks()
    for title, functions in {"jax_worker.py": [job.setup_jax],
                             "tf_worker.py": [job.setup_tensorflow],
                             "keras_mwms_workaround.py": [job.patch_keras_for_mwms,
                                                          job.build_on_local_batch]}.items():
        for fn in functions:
            assert inspect.getsource(fn) in blocks[title], (title, fn.__name__)
