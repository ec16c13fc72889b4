"""GPU check: exactness, host syncs and per-step overhead of stepsched on a CUDA machine.

Usage (from the repository root, on a machine with a CUDA GPU, PyTorch and JAX;
no network needed once stepsched, Keras and their pure-Python dependencies are
installed, e.g. ``pip install --no-index --find-links wheels/ -e .``):

    python benchmarks/gpu_check.py [--backends torch,jax] [--timeout 240]

Runs one subprocess per Keras backend and prints one table:

- **exactness** (torch, JAX): one schedule of every class trained for 48 steps
  with plain SGD on one scalar weight (loss ``mean(w)``, so each step's
  decrement is the applied rate), on the GPU, against ``schedule.at()``;
- **syncs** (torch): real AdamW training steps (``model.train_step``) of
  every class under ``torch.cuda.set_sync_debug_mode("error")`` (any
  device->host synchronisation raises), and the Python-level host reads
  (``Tensor.item`` etc.) counted beside;
- **overhead** (torch, JAX): step time of a mid-size MLP with a few schedules
  against a constant rate, paired interleaved repeats (median ratio).

Without a CUDA GPU it prints why and exits with status 0, having checked
nothing. ``--allow-cpu`` runs the same checks on the CPU (for testing the
script itself; the sync mode is then a no-op). Total time: under 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXACT_STEPS = 48
TRAIN_STEPS = 6
OVERHEAD = {"steps": 48, "repeats": 7}
TOLERANCE = 1e-5  # relative to the largest intended rate (float32 rounding of the weight)


# ----------------------------------------------------------------- parent
def torch_cuda() -> tuple[bool, str]:
    try:
        import torch
    except ImportError as exc:
        return False, f"PyTorch is not installed ({exc})"
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA device"
    return True, torch.cuda.get_device_name(0)


def run_backend(backend: str, allow_cpu: bool, timeout: float) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               XLA_PYTHON_CLIENT_PREALLOCATE="false")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(out)]
        if allow_cpu:
            cmd.append("--allow-cpu")
        try:
            proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"rows": [[backend, "all", "FAIL", f"timed out after {timeout:.0f} s"]]}
        if proc.returncode != 0 or not out.exists():
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            return {"rows": [[backend, "all", "FAIL", f"exit {proc.returncode}: {tail}"]]}
        return json.loads(out.read_text())


def table(rows: list[list[str]]) -> str:
    header = ["backend", "check", "result", "details"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="torch,jax")
    parser.add_argument("--timeout", type=float, default=130.0,
                        help="seconds per backend (default 130: both under 5 minutes)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run the checks without a GPU (tests the script only)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.allow_cpu)
    ok, what = torch_cuda()
    if not ok and not args.allow_cpu:
        print(f"gpu_check: no CUDA GPU here: {what}. Nothing was checked; run this on a "
              "machine with a CUDA GPU, PyTorch and JAX.")
        return 0
    t0 = time.time()
    print(f"gpu_check on {what if ok else 'the CPU (--allow-cpu)'}", file=sys.stderr)
    rows = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        print(f"  {backend} ...", file=sys.stderr, flush=True)
        res = run_backend(backend, args.allow_cpu, args.timeout)
        rows += res["rows"]
        if res.get("device"):
            rows.insert(len(rows) - len(res["rows"]), [backend, "device", "", res["device"]])
    print(table(rows))
    print(f"\n{time.time() - t0:.0f} s", file=sys.stderr)
    return 1 if any(r[2] == "FAIL" for r in rows) else 0


# ----------------------------------------------------------------- worker
def worker(out: Path, allow_cpu: bool) -> int:
    sys.path.insert(0, str(HERE))
    import keras
    import numpy as np
    import workloads

    backend = keras.backend.backend()
    device, on_gpu = _device(backend)
    result = {"device": device, "rows": []}
    rows = result["rows"]
    if not on_gpu and not allow_cpu:
        rows.append([backend, "all", "SKIP", f"no GPU device for {backend}: {device}"])
        out.write_text(json.dumps(result))
        return 0
    classes = workloads.every_class(EXACT_STEPS)

    # exactness: applied rates against at(), every class
    worst, bad = 0.0, []
    for name, schedule in classes.items():
        v = workloads.Variant(name, name, lambda s=schedule: s, schedule.at)
        applied = workloads.probe_rates(v, EXACT_STEPS, 1)
        intended = np.asarray(schedule.at(np.arange(EXACT_STEPS)), np.float64)
        err = float(np.max(np.abs(applied - intended)) / np.max(np.abs(intended)))
        worst = max(worst, err)
        if not err <= TOLERANCE:
            bad.append(f"{name} {err:.1e}")
    rows.append([backend, f"exactness, {len(classes)} classes x {EXACT_STEPS} steps",
                 "FAIL" if bad else "PASS",
                 f"max error {worst:.1e} of the largest rate (limit {TOLERANCE:g})"
                 + (f"; failing: {', '.join(bad)}" if bad else "")])

    if backend == "torch":
        rows.append(_sync_check(classes, workloads, on_gpu))
    rows.append(_overhead(backend, workloads, on_gpu))
    out.write_text(json.dumps(result))
    return 0


def _device(backend: str) -> tuple[str, bool]:
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", True
        return f"torch {torch.__version__}, CPU only", False
    if backend == "jax":
        import jax

        devices = jax.devices()
        gpu = devices[0].platform == "gpu"
        return f"jax {jax.__version__}, {devices[0].device_kind} ({devices[0].platform})", gpu
    return backend, False


def _sync_check(classes: dict, workloads, on_gpu: bool) -> list[str]:
    import keras
    import numpy as np
    import torch

    dev = "cuda" if on_gpu else "cpu"
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((8, 16)).astype("float32"), device=dev)
    y = torch.as_tensor(rng.standard_normal((8, 1)).astype("float32"), device=dev)

    def steps(lr) -> tuple[str | None, int]:
        inputs = keras.Input((16,))
        h = keras.layers.Dense(32, activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1)(h))
        model.compile(optimizer=keras.optimizers.AdamW(learning_rate=lr), loss="mse")
        model.fit(x.cpu().numpy(), y.cpu().numpy(), batch_size=8, epochs=1, verbose=0)
        if on_gpu:
            torch.cuda.synchronize()
        error = None
        with workloads.SyncCounter() as counter:
            if on_gpu:
                torch.cuda.set_sync_debug_mode("error")
            try:
                for _ in range(TRAIN_STEPS):
                    model.train_step((x, y))
            except RuntimeError as exc:
                error = str(exc).splitlines()[0][:120]
            finally:
                if on_gpu:
                    torch.cuda.set_sync_debug_mode("default")
        return error, counter.total

    base_error, base_reads = steps(workloads.PEAK)
    if base_error:
        return ["torch", "syncs under set_sync_debug_mode('error')", "n/a",
                f"Keras's own step with a constant rate syncs: {base_error}"]
    failing = []
    for name, schedule in classes.items():
        error, reads = steps(schedule)
        if error or reads != base_reads:
            failing.append(f"{name}: {error or f'{reads - base_reads} host reads'}")
    mode = "set_sync_debug_mode('error')" if on_gpu else "CPU: host reads only"
    return ["torch", f"syncs, {len(classes)} classes x {TRAIN_STEPS} AdamW steps ({mode})",
            "FAIL" if failing else "PASS",
            "; ".join(failing) if failing else "no synchronisation, no host read"]


def _overhead(backend: str, workloads, on_gpu: bool) -> list[str]:
    import random

    import keras
    import numpy as np

    import stepsched as ss

    def sync() -> None:
        if backend == "torch" and on_gpu:
            import torch

            torch.cuda.synchronize()
    n = OVERHEAD["steps"]
    x, y, batch = workloads.model_data("mid", n)
    lrs = {"constant": workloads.PEAK,
           "keras ExponentialDecay": keras.optimizers.schedules.ExponentialDecay(
               workloads.PEAK, 1000, 0.96),
           "seed": ss.Warmup(1000) >> ss.Exponential(workloads.PEAK, 0.96, every=1000),
           "WarmupCosine": ss.WarmupCosine(workloads.PEAK, 1000, 10000),
           "Sequence+Restarts": workloads.sequence_with_restarts(10000),
           "Restarts(1.0002)": ss.Restarts(ss.Cosine(workloads.PEAK, 1e-5, 500),
                                           period_mult=1.0002),
           "Piecewise(1,000)": ss.Piecewise(*workloads.piecewise_knots(10000, 1000))}
    models = {k: workloads.build_model("mid", lr) for k, lr in lrs.items()}
    times = {k: [] for k in lrs}
    for m in models.values():
        m.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    rng = random.Random(0)
    order = list(models)
    for _ in range(OVERHEAD["repeats"]):
        rng.shuffle(order)
        for k in order:
            sync()
            t0 = time.perf_counter()
            models[k].fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            sync()
            times[k].append(time.perf_counter() - t0)
    base = np.asarray(times["constant"])
    cells = [f"constant {1e3 * base.min() / n:.2f} ms/step"]
    for k in lrs:
        if k != "constant":
            cells.append(f"{k} {np.median(np.asarray(times[k]) / base):.2f}x")
    return [backend, f"step time vs constant (mid MLP, {n} steps, {OVERHEAD['repeats']} "
                     "paired repeats, median)", "", ", ".join(cells)]


if __name__ == "__main__":
    sys.exit(main())
