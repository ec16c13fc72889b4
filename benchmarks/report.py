"""Markdown tables and target checks from the collected benchmark results."""

from __future__ import annotations

BACKEND_SHORT = {"tensorflow": "TF", "jax": "JAX", "torch": "torch"}
TARGET_BACKENDS = ("tensorflow", "jax")
STEP_TOLERANCE = 1.05  # stepsched within 5 % of a constant rate
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
    """Every variant of any configuration, in the order of the first that has it."""
    seen: dict[str, str] = {}
    for _, cfg in _configs(results):
        for k, v in cfg["variants"].items():
            seen.setdefault(k, v["label"])
    return list(seen.items())


def _spread(v: dict) -> str:
    q25, q75 = v.get("step_ratio_paired_q25"), v.get("step_ratio_paired_q75")
    cell = f"{v['step_ratio_paired_median']:.2f}"
    if q25 is not None and q75 is not None:
        cell += f" [{q25:.2f}–{q75:.2f}]"
    if q25 is not None and q25 > 1.0:  # slower in three repeats of four: not noise
        cell = f"**{cell}**"
    return cell


def step_table(results: dict, spe: int | None = None) -> str:
    configs = [(b, c) for b, c in _configs(results)
               if spe is None or c["steps_per_execution"] == spe]
    header = ["variant"] + [_col(b, c) for b, c in configs]
    rows = [["constant rate: ms/step, min (median)"]
            + [f"{c['variants']['constant']['step_ms']:.3f} "
               f"({c['variants']['constant']['step_ms_median']:.3f})" for _, c in configs]]
    for name, label in _variant_order(results):
        if name == "constant" or not any(name in c["variants"] for _, c in configs):
            continue
        rows.append([label] + [_spread(c["variants"][name]) if name in c["variants"] else "—"
                               for _, c in configs])
    return _table(header, rows)


def per_fit_table(results: dict) -> str:
    """The first epoch of each fit() beyond its second (steady) one, at spe=1, in ms."""
    configs = [(b, c) for b, c in _configs(results) if c["steps_per_execution"] == 1]
    header = ["variant"] + [_col(b, c) for b, c in configs]
    rows = []
    for name, label in _variant_order(results):
        if not any(name in c["variants"] for _, c in configs):
            continue
        rows.append([label] + [f"{c['variants'][name].get('first_epoch_extra_ms', float('nan')):.0f}"
                               if name in c["variants"] else "—" for _, c in configs])
    return _table(header, rows)


def _us(x: dict | None, net: float = 0.0) -> str:
    if x is None:
        return "—"
    return f"{x['us_min'] - net:.2f} ({x['us_median'] - net:.2f})"


def eval_table(results: dict, backend: str) -> str:
    """Per-evaluation cost on one backend, stepsched beside Keras."""
    res = results.get("eval", {}).get(backend)
    if not res or "error" in res:
        return f"({BACKEND_SHORT.get(backend, backend)}: per-evaluation benchmark not run)"
    e = res["eval"]
    net = 0.0 if backend == "torch" else e["empty"]["us_min"]
    kexp = e["keras_exponential"]
    header = ["schedule", "stepsched µs, min (median)", "x Keras ExponentialDecay",
              "Keras counterpart", "Keras µs, min (median)", "x counterpart"]
    if backend == "torch":
        header.append("host syncs per call (stepsched / Keras)")
    else:
        header.append("graph ops (stepsched / Keras)")
    rows = []
    for r in e["rows"].values():
        ssr, k = r["ss"], r["keras"]
        if backend == "torch":
            ratio = f"{ssr['ratio_to_keras_exponential_paired_median']:.2f}"
            rc = (f"{r['ratio_to_counterpart_paired_median']:.2f}"
                  if k is not None else "—")
        else:  # net of the call overhead: the cost inside the compiled step
            kx = kexp["us_min"] - net
            ratio = f"{(ssr['us_min'] - net) / kx:.1f}" if kx > 0.05 else "n/a"
            kc = None if k is None else k["us_min"] - net
            rc = "—" if k is None else (f"{(ssr['us_min'] - net) / kc:.1f}" if kc > 0.05
                                         else "n/a")
        extra_key = "syncs_per_call" if backend == "torch" else "graph_ops"
        extra = f"{ssr[extra_key]:g} / " + ("—" if k is None else f"{k[extra_key]:g}")
        rows.append([r["label"], _us(ssr, net), ratio, r["keras_label"] or "none", _us(k, net),
                     rc, extra])
    extra_key = "syncs_per_call" if backend == "torch" else "graph_ops"
    rows.append(["Keras ExponentialDecay itself", "—", "1", "", _us(kexp, net), "",
                 f"— / {kexp[extra_key]:g}"])
    return _table(header, rows)


def eval_note(results: dict, backend: str) -> str:
    res = results.get("eval", {}).get(backend)
    if not res or "error" in res:
        return ""
    e = res["eval"]
    emp = e["empty"]
    k = e.get("evaluations_per_call", 1)
    return (f"{e['repeats']} interleaved repeats of up to {e['calls']} calls at step "
            f"{e['step']:,}"
            + ("; eager, as Keras's torch optimizer calls it" if backend == "torch" else
               f"; each compiled call evaluates at {k} consecutive steps; µs per evaluation, "
               f"net of the same call with the steps only ({emp['us_min']:.2f} µs per "
               f"evaluation, min), ratios are of the net minima"))


def apply_table(results: dict) -> str:
    res = results.get("eval", {}).get("tensorflow")
    if not res or "error" in res or not res.get("apply"):
        return "(TensorFlow not run)"
    a = res["apply"]
    rows = [[r["label"], f"{r['graph_ops']:,}", f"{r['extra_ops_over_constant']:+,}",
             "—" if not r["one_evaluation_ops"] else f"{r['one_evaluation_ops']}",
             "—" if r["evaluations_estimate"] is None else f"{r['evaluations_estimate']:.0f}"]
            for r in a["rows"].values()]
    return _table(["learning rate", f"graph ops of one AdamW apply ({a['variables']} variables)",
                   "over a constant rate", "ops of one evaluation",
                   "extra / one evaluation"], rows)


def groups_table(results: dict) -> str:
    """One AdamW ``apply`` per backend: Keras's, stepsched's with one rate, with groups."""
    runs = {b: r["groups"] for b, r in results.get("eval", {}).items()
            if "error" not in r and r.get("groups")}
    if not runs:
        return "(variable groups not run)"
    first = next(iter(runs.values()))
    header = ["optimizer"] + [f"{BACKEND_SHORT.get(b, b)}: µs, min (x Keras AdamW)"
                              for b in runs]
    header += [f"{BACKEND_SHORT.get(b, b)} ops" for b in runs if b != "torch"]
    if "torch" in runs:
        header.append("torch host reads")
    rows = []
    for name, row in first["rows"].items():
        cells = [row["label"]]
        for g in runs.values():
            r = g["rows"][name]
            cells.append(f"{r['us_min']:,.0f} ({r['ratio_to_keras_constant_paired_median']:.2f})")
        cells += [f"{g['rows'][name]['ops']:,}" for b, g in runs.items() if b != "torch"]
        if "torch" in runs:
            cells.append(f"{runs['torch']['rows'][name]['syncs_per_call']:g}")
        rows.append(cells)
    return _table(header, rows)


def sync_table(results: dict) -> str:
    res = results.get("eval", {}).get("torch")
    if not res or "error" in res or not res.get("training_syncs"):
        return "(torch not run)"
    t = res["training_syncs"]
    bad = {k: v for k, v in t.items() if v}
    steps = res["config"]["train_steps"]
    if not bad:
        return (f"All {len(t)} schedule classes ({', '.join(t)}): **0** host reads during "
                f"{steps} AdamW training steps beyond those of a constant rate.")
    return (f"Host reads during {steps} AdamW steps beyond a constant rate's: "
            + ", ".join(f"{k} {v}" for k, v in t.items()) + ".")


def trace_table(results: dict) -> str:
    configs = [(b, c) for b, c in _configs(results) if c["model"] == "mlp"]
    header = ["variant"] + [_col(b, c, with_model=False) for b, c in configs]
    rows = []
    for name, label in _variant_order(results):
        if not all(name in c["variants"] for _, c in configs):
            continue  # the callback paths: their trace is the bare schedule's
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
    """Every target with its measured value and PASS/MISS (step ratios: paired medians)."""
    out = []
    for backend, cfg in _configs(results):
        v = cfg["variants"]
        where = _col(backend, cfg)
        calls = {k: r for k, r in v.items() if r["family"] == "stepsched_callback"}
        if calls:
            worst = max(calls, key=lambda k: calls[k]["step_ratio_paired_median"])
            ratio = calls[worst]["step_ratio_paired_median"]
            out.append({"target": f"stepsched callbacks <= {STEP_TOLERANCE:.2f}x constant",
                        "where": where, "value": f"worst {ratio:.3f} ({calls[worst]['label']})",
                        "pass": ratio <= STEP_TOLERANCE})
        assign, plain = v.get("batch_scheduler"), v.get("callback")
        if assign and plain:  # assigning every batch costs what it costs; no more than that
            ratio = assign["step_ratio_paired_median"] / plain["step_ratio_paired_median"]
            out.append({"target": f"BatchLearningRateScheduler <= {STEP_TOLERANCE:.2f}x the plain "
                                  "assigning callback", "where": where,
                        "value": f"{ratio:.3f}", "pass": ratio <= STEP_TOLERANCE})
        if backend not in TARGET_BACKENDS:
            continue
        ours = {k: r for k, r in v.items() if r["family"] == "stepsched"}
        worst = max(ours, key=lambda k: ours[k]["step_ratio_paired_median"])
        ratio = ours[worst]["step_ratio_paired_median"]
        out.append({"target": f"stepsched step time <= {STEP_TOLERANCE:.2f}x constant",
                    "where": where, "value": f"worst {ratio:.3f} ({ours[worst]['label']})",
                    "pass": ratio <= STEP_TOLERANCE})
        if cfg["model"] == "mlp":
            tr = v["ss_piecewise"]["trace_ratio"]
            out.append({"target": f"ss.Piecewise trace < {TRACE_TOLERANCE:.0f}x constant's",
                        "where": _col(backend, cfg, with_model=False),
                        "value": "n/a" if tr is None else f"{tr:.2f}x",
                        "pass": tr is not None and tr < TRACE_TOLERANCE})
    for backend, res in results.get("eval", {}).items():
        if "error" in res:
            continue
        for r in res["eval"]["rows"].values():
            ssr, k = r["ss"], r["keras"]
            if backend == "torch":
                x = ssr["ratio_to_keras_exponential_paired_median"]
                out.append({"target": "torch: one evaluation <= 1x Keras ExponentialDecay, "
                                      "0 syncs", "where": r["label"],
                            "value": f"{x:.2f}x, {ssr['syncs_per_call']:g} syncs",
                            "pass": x <= 1.0 and ssr["syncs_per_call"] == 0})
            if backend == "tensorflow" and k is not None:
                x = ssr["graph_ops"] / k["graph_ops"]
                out.append({"target": "TF: graph ops <= 1.5x Keras's counterpart",
                            "where": f"{r['label']} vs {r['keras_label']}",
                            "value": f"{ssr['graph_ops']} vs {k['graph_ops']} ({x:.1f}x)",
                            "pass": x <= 1.5})
        apply = res.get("apply")
        if apply:
            for name, r in apply["rows"].items():
                if name.startswith("ss_"):
                    n = r["evaluations_estimate"]
                    out.append({"target": "TF: AdamW apply costs under 1.5 evaluations more "
                                          "than a constant rate",
                                "where": f"{r['label']}, {apply['variables']} variables",
                                "value": f"{n:+.1f} evaluations", "pass": n is not None and n < 1.5})
        if res.get("training_syncs"):
            bad = sum(1 for x in res["training_syncs"].values() if x)
            out.append({"target": "torch: 0 host syncs in training, every schedule class",
                        "where": f"{len(res['training_syncs'])} classes",
                        "value": f"{bad} classes with syncs", "pass": bad == 0})
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
    parts = [f"Measured {machine_line(results)}{quick}.", ""]
    for backend in results.get("eval", {}):
        parts += [f"**One evaluation on {BACKEND_SHORT.get(backend, backend)}**, "
                  f"`schedule(optimizer.iterations)` as the optimizer calls it "
                  f"({eval_note(results, backend)}):", "", eval_table(results, backend), ""]
    if "tensorflow" in results.get("eval", {}):
        parts += ["**Evaluations per AdamW `apply`** on TF (graph of one `apply`, traced):", "",
                  apply_table(results), ""]
    if any(r.get("groups") for r in results.get("eval", {}).values() if "error" not in r):
        g = next(r["groups"] for r in results["eval"].values() if r.get("groups"))
        parts += [f"**Variable groups**: one AdamW `apply` over {g['variables']} variables "
                  f"at step {g['step']:,} (TF: a traced `tf.function`; JAX: the jitted "
                  "`stateless_apply`; torch: eager), interleaved, minimum over "
                  f"{g['repeats']} repeats and the median of the per-repeat ratio to Keras's "
                  "AdamW with a constant rate; ops: graph nodes (TF) or jaxpr equations "
                  "(JAX) of one apply:", "", groups_table(results), ""]
    if "torch" in results.get("eval", {}):
        parts += ["**Host syncs in training** (torch, every schedule class): "
                  + sync_table(results), ""]
    parts += [
        "**Training step time at `steps_per_execution=1`**, per-repeat ratio to a constant "
        "rate: median [quartiles] over paired repeats (each repeat runs one two-epoch `fit()` "
        "of every variant, in a fresh random order; the ratio is the variant's second-epoch "
        "time over the constant rate's in the same repeat). Bold: slower than the constant in at least "
        "three repeats of four; every other row is within this machine's noise:",
        "",
        step_table(results, spe=1),
        "",
    ]
    parts += ["**Per `fit()` cost**: the first epoch of each repeat's `fit()` minus its "
              "second epoch, median over repeats, in ms (a fit() that extends the run "
              "re-plans it; on TF and JAX the new plan retraces the train function):", "",
              per_fit_table(results), ""]
    if any(c["steps_per_execution"] != 1 for _, c in _configs(results)):
        parts += ["**Training step time at `steps_per_execution=16`** (TF and JAX), "
                  "the same way:", "", step_table(results, spe=16), ""]
    parts += [
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
