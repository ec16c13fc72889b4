"""stepsched benchmarks: per-step schedules side by side with the alternatives.

Usage (from the repository root; ``bash dev bench`` runs this):

    python benchmarks/run.py [--quick] [--backends tensorflow,jax,torch] [--skip-host]
                             [--out PATH] [--write-readme]

Each backend's per-evaluation benchmark (``eval_bench.py``: one schedule
evaluation beside Keras's, µs, graph operations, host syncs) and training
benchmark (``train_bench.py``) run in their own subprocesses with
``KERAS_BACKEND`` set; host evaluation against optax and
torch runs in one more (``host_bench.py``). ``--quick`` (a smoke run) runs each
backend's workers one after the other in one subprocess (``quick_worker.py``; host
evaluation in JAX's), one interpreter start-up per backend. The parent collects their JSON,
adds machine information, writes ``benchmarks/results/<backend-or-all>.json``
(``-quick`` appended for ``--quick``), prints Markdown tables with PASS/MISS
per target, and with ``--write-readme`` puts the tables into README.md between
``<!-- perf:start -->`` and ``<!-- perf:end -->``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
START, END = "<!-- perf:start -->", "<!-- perf:end -->"
# One compute thread per process on every backend: on a busy machine, thread
# pools that spin-wait for busy cores make timings erratic; ratios stay comparable.
SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def _version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_info() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "load_before": _load(),
        "threads_per_process": 1,
        "versions": {
            "python": platform.python_version(),
            "stepsched": _version("stepsched"),
            "keras": _version("keras"),
            "tensorflow": _version("tensorflow-cpu", "tensorflow"),
            "jax": _version("jax"),
            "jaxlib": _version("jaxlib"),
            "torch": _version("torch"),
            "optax": _version("optax"),
            "numpy": _version("numpy"),
        },
    }


def run_worker(script: str, backend: str, quick: bool) -> dict:
    """Run one worker in a subprocess; its JSON, or ``{"error": ...}``."""
    return run_workers([script], backend, quick)[0]


def run_workers(scripts: list[str], backend: str, quick: bool) -> list[dict]:
    """Run workers in one subprocess: one worker as itself, several (quick mode) through
    ``quick_worker.py``, one after the other; each one's JSON, or ``{"error": ...}``."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               JAX_PLATFORMS="cpu", PYTHONHASHSEED="0", **SINGLE_THREAD)
    name = " + ".join(scripts)
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"{Path(script).stem}.json" for script in scripts]
        if len(scripts) == 1:
            cmd = [sys.executable, str(HERE / scripts[0]), str(outs[0])]
            cmd += ["--quick"] if quick else []
        else:
            assert quick, "several workers share a process in quick mode only"
            cmd = [sys.executable, str(HERE / "quick_worker.py")]
            cmd += [f"{script}={out}" for script, out in zip(scripts, outs, strict=True)]
        t0 = time.time()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        wall = time.time() - t0
        progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        if proc.returncode != 0:
            print(f"{name} ({backend}) failed with exit {proc.returncode}:\n{tail}",
                  file=sys.stderr)
        results = []
        for out in outs:
            if proc.returncode != 0 or not out.exists():
                results.append({"error": f"exit {proc.returncode}", "stderr_tail": tail,
                                "wall_s": wall})
                continue
            result = json.loads(out.read_text())
            result["process_wall_s"] = wall
            results.append(result)
    if proc.returncode == 0:
        print(f"  {name} ({backend}) done in {wall:.0f} s ({len(progress)} parts)",
              file=sys.stderr, flush=True)
    return results


def write_readme(markdown: str, readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} markers to replace")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{markdown}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny repeats and steps on every backend (a smoke run)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated Keras backends (default: all three)")
    parser.add_argument("--skip-host", action="store_true",
                        help="skip host evaluation against optax and torch")
    parser.add_argument("--out", type=Path, help="JSON output path")
    parser.add_argument("--write-readme", action="store_true",
                        help="replace the README's Performance tables with these")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or not backends:
        parser.error(f"--backends must be among {', '.join(BACKENDS)}, got {args.backends!r}")

    t0 = time.time()
    results = {"quick": args.quick, "machine": machine_info(), "eval": {}, "backends": {},
               "host": None}
    host_done = args.skip_host
    if args.quick:  # a smoke run: each backend's workers share one process (quick_worker.py)
        for backend in backends:
            scripts = ["eval_bench.py", "train_bench.py"]
            if backend == "jax" and not host_done:  # host_bench runs on JAX
                scripts.append("host_bench.py")
                host_done = True
            print(f"== per-evaluation cost and training benchmarks"
                  f"{', host evaluation' if len(scripts) == 3 else ''}, KERAS_BACKEND={backend}",
                  file=sys.stderr, flush=True)
            out = run_workers(scripts, backend, quick=True)
            results["eval"][backend], results["backends"][backend] = out[:2]
            if len(out) == 3:
                results["host"] = out[2]
    else:
        for backend in backends:
            print(f"== per-evaluation cost, KERAS_BACKEND={backend}", file=sys.stderr,
                  flush=True)
            results["eval"][backend] = run_worker("eval_bench.py", backend, args.quick)
        for backend in backends:
            print(f"== training benchmarks, KERAS_BACKEND={backend}", file=sys.stderr,
                  flush=True)
            results["backends"][backend] = run_worker("train_bench.py", backend, args.quick)
    if not host_done:
        print("== host evaluation (stepsched, optax, torch)", file=sys.stderr, flush=True)
        results["host"] = run_worker("host_bench.py", "jax", args.quick)
    results["machine"]["load_after"] = _load()
    results["wall_s"] = time.time() - t0
    results["targets"] = report.targets(results)

    name = backends[0] if len(backends) == 1 else "all"
    out = args.out or HERE / "results" / f"{name}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")

    markdown = report.markdown(results)
    print(markdown)
    print(f"\nwrote {out} in {results['wall_s']:.0f} s", file=sys.stderr)
    if args.write_readme:
        write_readme(markdown)
        print("updated README.md", file=sys.stderr)
    failed = [k for k, v in results["backends"].items() if "error" in v]
    failed += [f"eval {k}" for k, v in results["eval"].items() if "error" in v]
    if results["host"] and "error" in results["host"]:
        failed.append("host")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
