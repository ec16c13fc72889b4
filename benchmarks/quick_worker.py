"""Several workers in one process, one after the other (run by ``run.py --quick``).

Usage: KERAS_BACKEND=jax python benchmarks/quick_worker.py eval_bench.py=OUT1.json \
    train_bench.py=OUT2.json [host_bench.py=OUT3.json]

Each named worker's ``main()`` runs as ``python benchmarks/<worker> OUT --quick`` would run
it, in this order, writing its own JSON. A smoke run's numbers are not meaningful, so the
workers share one interpreter: the quick run pays one start-up (importing Keras, its backend,
optax and torch) per backend instead of one per worker. The full benchmark runs every
worker in a fresh process of its own.
"""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str]) -> int:
    jobs = [arg.split("=", 1) for arg in argv]
    if not jobs or any(len(job) != 2 or not job[0].endswith("_bench.py") for job in jobs):
        raise SystemExit(__doc__.split("\n\n")[1])
    for script, out in jobs:
        module = importlib.import_module(script[: -len(".py")])
        saved = sys.argv
        sys.argv = [script, out, "--quick"]
        try:
            code = module.main()
        finally:
            sys.argv = saved
        if code:
            print(f"{script} exited with {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
