"""Markdown tables and target checks from the collected benchmark results."""

from __future__ import annotations

BACKEND_SHORT = {"tensorflow": "TF", "jax": "JAX", "torch": "torch"}
TARGET_BACKENDS = ("tensorflow", "jax")
STEP_TOLERANCE = 1.05  # stepsched within 5 % of a constant rate
NOISE_FLOOR = 0.03  # "within noise" margin when comparing with Keras's ExponentialDecay
TRACE_TOLERANCE = 2.0  # 1,000-boundary Piecewise traces in under 2x a constant's time


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _err(x: float | None) -> str:
    if x is None:
        return "—"
    if x < 1e-3:
        return f"{x:.0e}"
    return f"{100 * x:.1f} %"


def _configs(results: dict):
    """(backend, config dict) for every timed training configuration."""
    for backend, res in results["backends"].items():
        if "error" in res:
            continue
        for cfg in res["step_time"]:
            yield backend, cfg


def _col(backend: str, cfg: dict, with_model: bool = True) -> str:
    out = f"{BACKEND_SHORT.get(backend, backend)} spe={cfg['steps_per_execution']}"
    return f"{out} {cfg['model']}" if with_model else out


def _variant_order(results: dict) -> list[tuple[str, str]]:
    for _, cfg in _configs(results):
        return [(k, v["label"]) for k, v in cfg["variants"].items()]
    return []


def step_table(results: dict) -> str:
    configs = list(_configs(results))
    header = ["variant"] + [_col(b, c) for b, c in configs]
    rows = [["constant rate: ms/step"] + [f"{c['variants']['constant']['step_ms']:.3f}"
                                          for _, c in configs]]
    for name, label in _variant_order(results):
        rows.append([label] + [f"{c['variants'][name]['step_ratio']:.3f}" for _, c in configs])
    return _table(header, rows)


def trace_table(results: dict) -> str:
    configs = [(b, c) for b, c in _configs(results) if c["model"] == "mlp"]
    header = ["variant"] + [_col(b, c, with_model=False) for b, c in configs]
    rows = []
    for name, label in _variant_order(results):
        cells = []
        for _, c in configs:
            v = c["variants"][name]
            ratio = "" if v["trace_ratio"] is None else f" ({v['trace_ratio']:.2f}x)"
            cells.append(f"{v['trace_s']:.2f} s{ratio}")
        rows.append([label] + cells)
    return _table(header, rows)


def error_table(results: dict) -> str:
    cols, data = [], {}
    for backend, res in results["backends"].items():
        if "error" in res:
            continue
        for row in res["errors"]:
            col = f"{BACKEND_SHORT.get(backend, backend)} spe={row['steps_per_execution']}"
            if col not in cols:
                cols.append(col)
            data.setdefault(row["variant"], {"label": row["label"]})[col] = row["sum_rel_error"]
    rows = [[d["label"]] + [_err(d.get(c)) for c in cols] for d in data.values()]
    return _table(["variant"] + cols, rows)


def host_table(results: dict) -> str:
    host = results.get("host")
    if not host or "error" in host:
        return "(host evaluation not run)"
    rows = []
    for r in host["rows"].values():
        torch_note = f" ({r['torch_scheduler']})" if r["torch_scheduler"] else ""
        rows.append([r["label"], f"{1e3 * r['ss_at_s']:.1f}", f"{1e3 * r['optax_jit_s']:.2f}",
                     f"{r['ratio_ss_to_optax']:.2f}",
                     f"{r['torch_extrapolated_s']:.2f}{torch_note}",
                     f"{r['ratio_torch_to_ss']:.0f}", f"{r['max_rel_diff_vs_optax']:.0e}"])
    n = next(iter(host["rows"].values()))["steps"]
    nt = next(iter(host["rows"].values()))["torch_timed_steps"]
    header = ["schedule", f"ss .at() {n:,} steps, ms", "optax jit, ms", "ss / optax",
              f"torch scheduler, s (timed {nt:,} steps, extrapolated)", "torch / ss",
              "max rel. diff vs optax"]
    return _table(header, rows)


def finder_table(results: dict) -> str:
    rows = []
    for backend, res in results["backends"].items():
        f = res.get("finder")
        if not f:
            continue
        if not f.get("available"):
            rows.append([BACKEND_SHORT.get(backend, backend), "—", "—", "—", "—", f["note"]])
            continue
        rows.append([BACKEND_SHORT.get(backend, backend), f"{f['steps_done']}",
                     f"{f['find_lr_s']:.2f}",
                     f"{f['plain_first_fit_s']:.2f}", f"{f['plain_steady_fit_s']:.2f}",
                     f"{f['ratio_to_first_fit']:.2f}x first fit, "
                     f"{f['ratio_to_steady_fit']:.1f}x steady fit"])
    header = ["backend", "steps", "find_lr, s", "plain fit (first, traces), s", "plain fit (steady), s",
              "ratio"]
    return _table(header, rows)


def targets(results: dict) -> list[dict]:
    """Every target with its measured value and PASS/MISS."""
    out = []
    for backend, cfg in _configs(results):
        if backend not in TARGET_BACKENDS:
            continue
        v = cfg["variants"]
        ours = {k: r for k, r in v.items() if r["family"] == "stepsched"}
        worst = max(ours, key=lambda k: ours[k]["step_ratio"])
        ratio = ours[worst]["step_ratio"]
        paired = max(r["step_ratio_paired_median"] for r in ours.values())
        where = _col(backend, cfg)
        out.append({"target": f"stepsched step time <= {STEP_TOLERANCE:.2f}x constant",
                    "where": where,
                    "value": f"worst {ratio:.3f} ({ours[worst]['label']}); "
                             f"paired median {paired:.3f}",
                    "pass": ratio <= STEP_TOLERANCE})
        const = v["constant"]
        noise = max(NOISE_FLOOR, const["step_ms_median"] / const["step_ms"] - 1.0)
        keras_ratio = v["keras_exponential"]["step_ratio"]
        out.append({"target": "stepsched no slower than keras ExponentialDecay (+ noise)",
                    "where": where,
                    "value": f"worst {ratio:.3f} vs {keras_ratio:.3f} + {noise:.3f}",
                    "pass": ratio <= keras_ratio + noise})
        if cfg["model"] == "mlp":
            tr = v["ss_piecewise"]["trace_ratio"]
            out.append({"target": f"ss.Piecewise trace < {TRACE_TOLERANCE:.0f}x constant's",
                        "where": _col(backend, cfg, with_model=False),
                        "value": "n/a" if tr is None else f"{tr:.2f}x",
                        "pass": tr is not None and tr < TRACE_TOLERANCE})
    host = results.get("host")
    if host and "error" not in host:
        for name, r in host["rows"].items():
            if name == "constant":  # optax's constant_schedule returns a scalar: no work
                continue
            out.append({"target": "at() no slower than jitted optax", "where": r["label"],
                        "value": f"{r['ratio_ss_to_optax']:.2f}x optax",
                        "pass": r["ratio_ss_to_optax"] <= 1.0})
    return out


def targets_table(results: dict) -> str:
    rows = [[t["target"], t["where"], t["value"], "PASS" if t["pass"] else "MISS"]
            for t in targets(results)]
    return _table(["target", "where", "measured", "result"], rows)


def machine_line(results: dict) -> str:
    m = results["machine"]
    v = m["versions"]
    versions = ", ".join(f"{k} {v[k]}" for k in ("python", "keras", "tensorflow", "jax", "torch",
                                                  "optax", "numpy") if v.get(k))
    return (f"{m['date']}; {m['cpu']} ({m['cores']} cores, load average {m['load_before']} at "
            f"start); {versions}")


def markdown(results: dict) -> str:
    quick = " (quick smoke run: numbers are not meaningful)" if results["quick"] else ""
    parts = [
        f"Measured {machine_line(results)}{quick}.",
        "",
        "**Training step time**, ratio to a constant rate (the first row is the constant "
        "rate's own time in ms/step; min over interleaved repeats of the epoch time / steps; "
        "spe = `steps_per_execution`):",
        "",
        step_table(results),
        "",
        "**Applied-rate error**: relative error of the summed learning rate actually applied "
        "over the probe run (one scalar weight, loss `mean(w)`, plain SGD: the weight's "
        "decrements are the applied rates), against the rate each approach intends:",
        "",
        error_table(results),
        "",
        "**Trace time** of the train function (first `fit()` minus a steady `fit()`, small "
        "MLP; in parentheses the ratio to the constant rate's):",
        "",
        trace_table(results),
        "",
        "**Host evaluation** of the whole schedule:",
        "",
        host_table(results),
        "",
        "**LR range test** (`stepsched.find_lr`) against plain training for the same "
        "number of steps:",
        "",
        finder_table(results),
        "",
        "**Targets**:",
        "",
        targets_table(results),
    ]
    return "\n".join(parts)
