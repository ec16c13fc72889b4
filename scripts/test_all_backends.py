"""Lint, then run the test suite once per Keras backend; non-zero exit on any failure.

Tests marked ``backend_independent`` (host code only, checked by tests/conftest.py) run
once, in the first backend's pass; every other test runs on each backend.

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
        for i, backend in enumerate(args.backends.split(",")):
            # the first pass runs every test, the later ones the backend-dependent tests
            tests = "all" if i == 0 else "backend"
            print(f"== pytest, KERAS_BACKEND={backend}"
                  + (" (with the backend-independent tests)" if i == 0 else ""), flush=True)
            xml = Path(tmp) / f"{backend}.xml"
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
            print(f"== {backend}: exit {code} in {time.time() - start:.0f}s", flush=True)
            if code == 5 and tests == "backend":
                code = 0  # the selected tests were all backend-independent: nothing left here
            if code != 0:
                failed_steps.append(f"pytest[{backend}]")
            if xml.exists():
                root = ET.parse(xml).getroot()
                for suite in root.iter("testsuite"):
                    tests = int(suite.get("tests", 0))
                    fails = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
                    skips = int(suite.get("skipped", 0))
                    totals["passed"] += tests - fails - skips
                    totals["failed"] += fails
                    totals["skipped"] += skips
    if failed_steps:
        print("failed:", ", ".join(failed_steps))
    print(f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if failed_steps or totals["passed"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
