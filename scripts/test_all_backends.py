"""Lint, then run the test suite once per Keras backend; non-zero exit on any failure.

Tests marked ``backend_independent`` (host code only, checked by tests/conftest.py) run
once, in a pass of their own with the first backend installed; every other test runs in
each backend's pass. The host-code pass is a fresh process: thousands of small tests run
there faster than in a process that holds hundreds of traced models.

Usage: python scripts/test_all_backends.py [--backends tensorflow,jax,torch] [pytest args]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--no-lint", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers")
    args, pytest_args = parser.parse_known_args()

    failed_steps = []
    if not args.no_lint:
        print("== ruff", flush=True)
        if subprocess.call([sys.executable, "-m", "ruff", "check", "src", "tests", "scripts",
                            "benchmarks"], cwd=ROOT):
            failed_steps.append("ruff")

    totals = {"passed": 0, "failed": 0, "skipped": 0}
    with tempfile.TemporaryDirectory() as tmp:
        backends = args.backends.split(",")
        # the host-code tests once, then each backend's tests
        for tests, backend in [("independent", backends[0])] + [("backend", b) for b in backends]:
            print(f"== pytest, KERAS_BACKEND={backend}"
                  + (" (the backend-independent tests)" if tests == "independent" else ""),
                  flush=True)
            xml = Path(tmp) / f"{tests}-{backend}.xml"
            env = dict(os.environ, KERAS_BACKEND=backend, PYTHONHASHSEED="0",
                       TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg", STEPSCHED_TESTS=tests)
            # JAX's compilation cache, new for this run: the many tests that build the same
            # small model and optimizer compile it once (XLA's executable for the same
            # program, read back instead of compiled again), whichever worker, pass or
            # subprocess compiled it first
            env.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tmp) / "jax-cache"))
            env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
            env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
            start = time.time()
            # two workers: the machines this runs on have two cores. worksteal: each worker
            # starts on a contiguous half of the tests (a module's tests, and what they share,
            # stay together) and an idle one takes half of the other's remaining tests, so
            # neither waits at the end while the other works through a queue
            code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                    "-n", str(args.workers), "--dist", "worksteal",
                                    f"--junitxml={xml}", *pytest_args],
                                   cwd=ROOT, env=env)
            step = f"{backend}, backend-independent" if tests == "independent" else backend
            print(f"== {step}: exit {code} in {time.time() - start:.0f}s", flush=True)
            if code == 5:
                code = 0  # a selection (pytest args) with no test of this kind: nothing to run
            if code != 0:
                failed_steps.append(f"pytest[{step}]")
            if xml.exists():
                root = ET.parse(xml).getroot()
                for suite in root.iter("testsuite"):
                    count = int(suite.get("tests", 0))
                    fails = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
                    skips = int(suite.get("skipped", 0))
                    totals["passed"] += count - fails - skips
                    totals["failed"] += fails
                    totals["skipped"] += skips
    if failed_steps:
        print("failed:", ", ".join(failed_steps))
    print(f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if failed_steps or totals["passed"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
