"""Variable groups (stepsched.optimizers.Group): assignment, per-group rates, weight decay
and hyperparameters, unfreezing; checked against torch parameter groups and optax
``multi_transform`` + ``inject_hyperparams``."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import stepsched as ss
import stepsched.optimizers as so
from conftest import BACKEND

SPE = 1 if BACKEND == "torch" else 4
TOTAL, BATCH = 24, 4


def _data(seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(TOTAL * BATCH, 4)).astype("float32")
    y = (np.tanh(x @ rng.normal(size=(4, 3))) @ rng.normal(size=(3, 1))).astype("float32")
    return x, y


def _model(optimizer=None, spe=SPE):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((4,))
    body = keras.layers.Dense(3, name="body")
    head = keras.layers.Dense(1, name="head")
    model = keras.Model(inputs, head(body(inputs)))
    if optimizer is not None:
        model.compile(optimizer=optimizer, loss="mse", steps_per_execution=spe,
                      jit_compile=BACKEND != "torch")
    return model, body, head


def _fit(model, x, y, epochs=1):
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False)


# --------------------------------------------------------------------- assignment
def test_every_variable_in_exactly_one_group():
    model, body, head = _model()
    two = so.Adam(groups=[so.Group("a", layers=[body]), so.Group("b", pattern="body/*"),
                          so.Group("rest")])
    with pytest.raises(ValueError, match="'body/kernel' is selected by groups \\['a', 'b'\\]"):
        two.build(model.trainable_variables)
    none = so.Adam(groups=[so.Group("a", layers=[body])])
    with pytest.raises(ValueError, match="'head/kernel' is in no group.*default group"):
        none.build(model.trainable_variables)
    with pytest.raises(ValueError, match="unique; given more than once: \\['a'\\]"):
        so.Adam(groups=[so.Group("a", layers=[body]), so.Group("a")])
    with pytest.raises(ValueError, match="only one group may leave"):
        so.Adam(groups=[so.Group("a"), so.Group("b")])
    with pytest.raises(ValueError, match="give one of layers, pattern, paths or where"):
        so.Group("a", layers=[body], pattern="x")
    with pytest.raises(TypeError, match="group 'a': SGD cannot schedule 'beta_1'"):
        so.SGD(groups=[so.Group("a", beta_1=0.9)])
    with pytest.raises(ValueError, match="Nadam keeps one product"):
        so.Nadam(groups=[so.Group("a", beta_1=0.9)])
    ok = so.Adam(groups=[so.Group("body", where=lambda v: v.path.startswith("body/")),
                         so.Group("head", layers=[head])])
    ok.build(model.trainable_variables)
    assert [g.assigned for g in ok.groups] == [["body/kernel", "body/bias"],
                                               ["head/kernel", "head/bias"]]


def test_group_rates_multiply_the_base_rate_and_each_group_keeps_its_own_weight_decay():
    """Plain SGD: the weight change of each variable is -rate_g * (grad + wd_g * w)."""
    x, y = _data()
    base = ss.Linear(0.1, 0.02, TOTAL)
    multiplier = ss.Linear(0.0, 1.0, TOTAL)
    opt = so.SGD(base, weight_decay=0.05, groups=[
        so.Group("body", pattern="body/*", multiplier=multiplier),
        so.Group("head", weight_decay=0.0, learning_rate=ss.Constant(0.03))])
    model, body, head = _model(opt, spe=1)
    rates = []
    for step in range(3):
        w = [v.copy() for v in model.get_weights()]
        xb, yb = x[step * BATCH:(step + 1) * BATCH], y[step * BATCH:(step + 1) * BATCH]
        grads = _grads(model, xb, yb)
        model.train_on_batch(xb, yb)
        new = model.get_weights()
        rate_body = float(base.at(step)) * float(multiplier.at(step))
        for i in (0, 1):  # body: decoupled decay then the step
            expect = w[i] - w[i] * 0.05 * rate_body - rate_body * grads[i]
            np.testing.assert_allclose(new[i], expect, rtol=1e-5, atol=1e-7)
        for i in (2, 3):  # head: own rate, no decay
            np.testing.assert_allclose(new[i], w[i] - 0.03 * grads[i], rtol=1e-5, atol=1e-7)
        rates.append(rate_body)
    assert rates[0] == 0.0 and rates[2] > 0


def _grads(model, x, y):
    """Gradients of the mse at the current weights, by central differences in float64."""
    weights = [w.astype("float64") for w in model.get_weights()]

    def loss(ws):
        h = x.astype("float64") @ ws[0] + ws[1]
        return np.mean((h @ ws[2] + ws[3] - y) ** 2)

    grads = []
    for i, w in enumerate(weights):
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            for sign in (1, -1):
                ws = [v.copy() for v in weights]
                ws[i][idx] += sign * 1e-6
                g[idx] += sign * loss(ws) / 2e-6
        grads.append(g)
    return grads


# --------------------------------------------------------------------- unfreezing
def test_frozen_group_is_not_updated_at_all_and_its_moments_do_not_drift():
    x, y = _data()
    k = 8
    opt = so.AdamW(0.01, weight_decay=0.1, groups=[
        so.Group("body", pattern="body/*", **so.unfreeze_at(k)), so.Group("head")])
    model, body, head = _model(opt, spe=1)
    opt.build(model.trainable_variables)
    before = [np.array(keras.ops.convert_to_numpy(v)) for v in opt.variables]
    body_before = [w.copy() for w in body.get_weights()]
    model.fit(x[:k * BATCH], y[:k * BATCH], batch_size=BATCH, verbose=0, shuffle=False)
    for w0, w1 in zip(body_before, body.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)  # no step, no weight decay
    after = {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in opt.variables}
    names = [v.path for v in opt.variables]
    for name, b in zip(names, before, strict=True):
        if "body" in name:
            np.testing.assert_array_equal(after[name], b)  # moments of body stay zero
        elif "head_kernel" in name:
            assert np.abs(after[name] - b).max() > 0
    model.fit(x[k * BATCH:(k + 1) * BATCH], y[k * BATCH:(k + 1) * BATCH], batch_size=BATCH,
              verbose=0)
    assert np.abs(body.get_weights()[0] - body_before[0]).max() > 0


def test_multiplier_exactly_zero_skips_the_group_at_that_step():
    x, y = _data()
    gate = ss.Piecewise([4, 8], [1.0, 0.0, 1.0])
    opt = so.Adam(0.01, groups=[so.Group("body", pattern="body/*", multiplier=gate),
                                so.Group("head")])
    model, body, _ = _model(opt, spe=1)
    model.fit(x[:4 * BATCH], y[:4 * BATCH], batch_size=BATCH, verbose=0, shuffle=False)
    w4 = body.get_weights()
    slots4 = {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in opt.variables
              if "body" in v.path}
    model.fit(x[4 * BATCH:8 * BATCH], y[4 * BATCH:8 * BATCH], batch_size=BATCH, verbose=0,
              shuffle=False)
    for a, b in zip(w4, body.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for v in opt.variables:
        if "body" in v.path:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), slots4[v.path])


# --------------------------------------------------------------------- torch
def _torch_twin(model):
    torch = pytest.importorskip("torch")
    w = model.get_weights()
    body, head = torch.nn.Linear(4, 3).double(), torch.nn.Linear(3, 1).double()
    with torch.no_grad():
        body.weight.copy_(torch.tensor(w[0].T, dtype=torch.float64))
        body.bias.copy_(torch.tensor(w[1], dtype=torch.float64))
        head.weight.copy_(torch.tensor(w[2].T, dtype=torch.float64))
        head.bias.copy_(torch.tensor(w[3], dtype=torch.float64))
    return torch, body, head


@pytest.mark.parametrize("frozen", [0, 6])
def test_two_groups_match_torch_parameter_groups_with_one_cycle(frozen):
    x, y = _data()
    lrs, moms = (0.004, 0.03), ((0.8, 0.9), (0.85, 0.95))
    groups = []
    for name, lr, (lo, hi) in zip(("body", "head"), lrs, moms, strict=True):
        rate = ss.OneCycle(lr, total_steps=TOTAL)
        extra = {"frozen_until": frozen} if name == "body" and frozen else {}
        groups.append(so.Group(name, pattern=f"{name}/*", learning_rate=rate,
                               beta_1=rate.momentum(lo, hi), **extra))
    opt = so.AdamW(1e-3, weight_decay=0.05, epsilon=1e-8, groups=groups)
    model, body, head = _model(opt)
    torch, tbody, thead = _torch_twin(model)
    _fit(model, x, y)

    topt = torch.optim.AdamW([{"params": tbody.parameters()}, {"params": thead.parameters()}],
                             lr=1e-3, weight_decay=0.05, eps=1e-8)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        topt, max_lr=list(lrs), total_steps=TOTAL, cycle_momentum=True,
        base_momentum=[m[0] for m in moms], max_momentum=[m[1] for m in moms])
    for i in range(TOTAL):
        for p in tbody.parameters():
            p.requires_grad_(i >= frozen)
        xb = torch.tensor(x[i * BATCH:(i + 1) * BATCH], dtype=torch.float64)
        yb = torch.tensor(y[i * BATCH:(i + 1) * BATCH], dtype=torch.float64)
        topt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(thead(tbody(xb)), yb).backward()
        topt.step()
        sched.step()
    np.testing.assert_allclose(body.get_weights()[0].T, tbody.weight.detach().numpy(), atol=3e-5)
    np.testing.assert_allclose(head.get_weights()[0].T, thead.weight.detach().numpy(), atol=3e-5)
    np.testing.assert_allclose(head.get_weights()[1], thead.bias.detach().numpy(), atol=3e-5)


# --------------------------------------------------------------------- optax
def test_two_groups_match_optax_multi_transform_with_inject_hyperparams():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jnp = jax.numpy
    x, y = _data()
    body_rate = ss.WarmupCosine(0.01, warmup=4, total=TOTAL)
    head_beta = ss.Linear(0.9, 0.7, TOTAL)
    opt = so.AdamW(0.02, weight_decay=0.1, epsilon=1e-8, groups=[
        so.Group("body", pattern="body/*", learning_rate=body_rate, weight_decay=0.0),
        so.Group("head", beta_1=head_beta)])
    model, body, head = _model(opt)
    w = model.get_weights()
    _fit(model, x, y)

    def at(schedule):
        return lambda count: jnp.asarray(schedule.at(np.asarray(count)))

    params = {"body": {"k": jnp.asarray(w[0]),
                       "b": jnp.asarray(w[1])},
              "head": {"k": jnp.asarray(w[2]), "b": jnp.asarray(w[3])}}
    tx = optax.multi_transform(
        {"body": optax.inject_hyperparams(optax.adamw)(learning_rate=at(body_rate),
                                                        weight_decay=0.0, eps=1e-8),
         "head": optax.inject_hyperparams(optax.adamw)(learning_rate=0.02, b1=at(head_beta),
                                                        weight_decay=0.1, eps=1e-8)},
        {"body": {"k": "body", "b": "body"}, "head": {"k": "head", "b": "head"}})
    state = tx.init(params)

    def loss(p, xb, yb):
        h = xb @ p["body"]["k"] + p["body"]["b"]
        return jnp.mean((h @ p["head"]["k"] + p["head"]["b"] - yb) ** 2)

    for i in range(TOTAL):
        g = jax.grad(loss)(params, x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(body.get_weights()[0], params["body"]["k"], atol=3e-5)
    np.testing.assert_allclose(head.get_weights()[0], params["head"]["k"], atol=3e-5)


# --------------------------------------------------------------------- cost
class _Counted(ss.Constant):
    """A constant that counts how often the optimizer evaluates it in-graph."""

    calls = 0

    def __call__(self, step):
        type(self).calls += 1
        return super().__call__(step)


def _evaluations(layers: int) -> int:
    inputs = keras.Input((4,))
    h = inputs
    for i in range(layers):
        h = keras.layers.Dense(4, name=f"d{i}")(h)
    model = keras.Model(inputs, h)
    _Counted.calls = 0
    opt = so.AdamW(0.01, weight_decay=0.1, beta_1=_Counted(0.9), groups=[
        so.Group("early", pattern=["d0/*", "d1/*"], multiplier=_Counted(0.5),
                 weight_decay=_Counted(0.01)),
        so.Group("late", learning_rate=_Counted(0.02))])
    model.compile(optimizer=opt, loss="mse", jit_compile=False)
    opt.build(model.trainable_variables)  # on torch, one evaluation of each, made eagerly
    _Counted.calls = 0
    x = np.ones((8, 4), "float32")
    model.fit(x, x, batch_size=4, verbose=0)  # two steps
    return _Counted.calls


def test_each_group_schedule_is_evaluated_once_per_step_whatever_the_number_of_variables():
    few, many = _evaluations(2), _evaluations(8)  # 4 and 16 variables
    assert few == many
    # beta_1, early's multiplier and decay, late's rate: 4 per traced (torch: per run) step
    assert few % 4 == 0 and few <= 8


# --------------------------------------------------------------------- saving
def test_groups_by_layer_round_trip_through_load_model(tmp_path):
    x, y = _data()

    def make():
        model, body, head = _model()
        opt = so.AdamW(ss.Linear(0.01, 0.001, 2 * TOTAL), weight_decay=0.05, groups=[
            so.Group("body", layers=[body], multiplier=ss.Linear(0.0, 1.0, TOTAL),
                     weight_decay=0.0),
            so.Group("head", beta_1=ss.Linear(0.95, 0.85, 2 * TOTAL))])
        model.compile(optimizer=opt, loss="mse", steps_per_execution=SPE,
                      jit_compile=BACKEND != "torch")
        return model

    straight = make()
    _fit(straight, x, y, epochs=2)
    first = make()
    _fit(first, x, y)
    path = str(tmp_path / "m.keras")
    first.save(path)
    again = keras.saving.load_model(path)
    assert [g.name for g in again.optimizer.groups] == ["body", "head"]
    assert again.optimizer.groups[0].paths == ["body/kernel", "body/bias"]
    _fit(again, x, y)
    np.testing.assert_allclose(np.concatenate([w.ravel() for w in again.get_weights()]),
                               np.concatenate([w.ravel() for w in straight.get_weights()]),
                               atol=1e-6)


def test_predicate_groups_cannot_be_saved_before_build():
    opt = so.Adam(groups=[so.Group("a", where=lambda v: True)])
    with pytest.raises(ValueError, match="cannot be saved before the optimizer is built"):
        opt.get_config()


# --------------------------------------------------------------------- helpers
@pytest.mark.backend_independent
def test_spread_is_fastai_even_mults():
    def even_mults(start, stop, n):  # fastai.torch_core.even_mults
        mult = stop / start
        step = mult ** (1 / (n - 1))
        return np.array([start * (step ** i) for i in range(n)])

    np.testing.assert_allclose(so.spread(1e-5, 1e-3, 4), even_mults(1e-5, 1e-3, 4), rtol=1e-12)
    assert so.spread(1e-5, 1e-3, 1) == [1e-3]
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        so.spread(1e-5, 1e-3, 0)


def test_layerwise_decay_by_depth_with_the_head_at_one():
    layers = [keras.layers.Dense(2, name=f"block{i}") for i in range(3)]
    groups = so.layerwise(layers, 0.75, weight_decay=0.0)
    assert [g.name for g in groups] == ["block_0", "block_1", "block_2", "head"]
    assert [float(g.multiplier.at(0)) for g in groups[:3]] == pytest.approx(
        [0.75 ** 3, 0.75 ** 2, 0.75])
    assert groups[-1].is_default and groups[-1].multiplier is None
    with pytest.raises(ValueError, match="decay must be in"):
        so.layerwise(layers, 1.5)


def test_the_fine_tuning_guide_runs():
    """docs/guide/fine-tuning.md: its code runs top to bottom."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).parent.parent / "docs/guide/fine-tuning.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 4
    namespace = {"__name__": "guide"}
    for block in blocks:
        exec(compile(block, "fine-tuning.md", "exec"), namespace)  # noqa: S102
    assert namespace["values"][0]["learning_rate/embeddings"] == 0.0


def test_logger_writes_every_scheduled_value_and_each_group_rate():
    inputs = keras.Input((3,))
    body = keras.layers.Dense(4, name="body")
    head = keras.layers.Dense(1, name="head")
    model = keras.Model(inputs, head(body(inputs)))
    lr = ss.Warmup(4) >> ss.Cosine(0.01, 0.0, 12)
    beta_1 = ss.Linear(0.95, 0.85, 16)
    model.compile(loss="mse", optimizer=so.Adam(lr, beta_1=beta_1, groups=[
        so.Group("body", layers=[body], multiplier=ss.Constant(0.1)), so.Group("head")]))
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    seen = []
    recorder = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(dict(logs)))
    history = model.fit(x, x[:, :1], batch_size=4, epochs=4, verbose=0, shuffle=False,
                        callbacks=[ss.callbacks.LearningRateLogger(), recorder])
    steps = np.arange(16)
    np.testing.assert_allclose([s["beta_1"] for s in seen], beta_1.at(steps), rtol=1e-6)
    np.testing.assert_allclose([s["learning_rate/head"] for s in seen], lr.at(steps), rtol=1e-6)
    np.testing.assert_allclose([s["learning_rate/body"] for s in seen], 0.1 * lr.at(steps),
                               rtol=1e-6)
    np.testing.assert_allclose(history.history["beta_1"], beta_1.at([3, 7, 11, 15]), rtol=1e-6)


# --------------------------------------------------------------------- torch.compile
@pytest.mark.skipif(BACKEND != "torch", reason="jit_compile=True on torch is torch.compile")
def test_torch_compile_gives_the_eager_weights():
    """On torch ``jit_compile=True`` compiles the train step with ``torch.compile``: a
    scheduled ``beta_1`` and groups (a multiplier schedule, a frozen group) give the
    weights of the eager step."""
    def run(jit):
        keras.utils.set_random_seed(1)
        opt = so.AdamW(ss.WarmupCosine(0.01, 4, TOTAL), beta_1=ss.Linear(0.95, 0.85, TOTAL),
                       groups=[so.Group("body", pattern="body/*",
                                        multiplier=ss.Linear(0.0, 1.0, 8)),
                               so.Group("head", frozen_until=6)])
        model, _, _ = _model()
        model.compile(optimizer=opt, loss="mse", jit_compile=jit)
        assert model.jit_compile is jit
        x, y = _data()
        _fit(model, x[:16 * BATCH], y[:16 * BATCH])
        return np.concatenate([w.ravel() for w in model.get_weights()])

    eager = run(False)
    np.testing.assert_allclose(run(True), eager, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------- one evaluation, one call
def test_groups_that_share_a_schedule_evaluate_it_once_per_step():
    inputs = keras.Input((4,))
    h = inputs
    for i in range(4):
        h = keras.layers.Dense(4, name=f"d{i}")(h)
    model = keras.Model(inputs, h)
    _Counted.calls = 0
    shared, rate = _Counted(0.5), _Counted(0.02)
    opt = so.AdamW(0.01, groups=[so.Group(f"g{i}", pattern=f"d{i}/*", multiplier=shared,
                                          learning_rate=rate) for i in range(3)]
                   + [so.Group("rest", multiplier=shared)])
    model.compile(optimizer=opt, loss="mse", jit_compile=False)
    opt.build(model.trainable_variables)  # on torch, one evaluation of each, made eagerly
    _Counted.calls = 0
    x = np.ones((8, 4), "float32")
    model.fit(x, x, batch_size=4, verbose=0)  # two steps
    # the rate and the multiplier: once each per traced (torch: per run) step
    assert _Counted.calls % 2 == 0 and _Counted.calls <= 4


@pytest.mark.skipif(BACKEND != "torch", reason="the fused torch update")
@pytest.mark.parametrize("amsgrad,body_decay", [(False, 0.2), (True, None)])
def test_torch_groups_in_one_fused_update_are_bit_equal_to_one_call_per_group(
        monkeypatch, amsgrad, body_decay):
    """Groups that differ only in rate share one fused Adam(W) update and one weight decay
    operation: the weights and slots are bit-equal to Keras's fused update and weight
    decay run once per group."""
    from stepsched import _keras
    from stepsched.optimizers import core

    def run(merged):
        if not merged:
            monkeypatch.setattr(_keras, "TORCH_FUSED_PER_VARIABLE_RATES", ())
            monkeypatch.delattr(core._TorchFused, "_apply_weight_decay")
        keras.utils.set_random_seed(1)
        opt = so.AdamW(ss.WarmupCosine(0.01, 4, TOTAL), weight_decay=0.05, amsgrad=amsgrad,
                       groups=[so.Group("body", pattern="body/*",
                                        multiplier=ss.Cosine(1.0, 0.1, TOTAL),
                                        weight_decay=body_decay),
                               so.Group("head", multiplier=0.5)])
        model, _, _ = _model(opt)
        x, y = _data()
        _fit(model, x, y)
        monkeypatch.undo()
        return [keras.ops.convert_to_numpy(v) for v in model.weights + opt.variables]

    for a, b in zip(run(True), run(False), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(BACKEND != "torch", reason="torch's rates of all groups at once")
@pytest.mark.parametrize("name", ["AdamW", "SGD"])
def test_torch_rates_of_all_groups_from_one_look_up_are_bit_equal_to_one_per_group(
        monkeypatch, name):
    """On torch the groups' rates come from one look-up of their schedules' tables and one
    product (``optimizers._torch_rates``): base-rate groups with multiplier schedules (one
    shared), groups with a rate of their own (alone, times a constant), a multiplier that
    reaches 0 (its gate), a frozen group and one with an open-ended multiplier (evaluated
    on its own) give bit for bit the weights of each group's rate evaluated on its own."""
    from stepsched.optimizers import core

    shared = ss.Cosine(1.0, 0.1, TOTAL)

    def run(together):
        if not together:
            monkeypatch.setattr(core, "_together", lambda *args: None)
        keras.utils.set_random_seed(1)
        inputs = keras.Input((4,))
        h = inputs
        for i in range(7):
            h = keras.layers.Dense(4 if i < 6 else 1, name=f"d{i}")(h)
        model = keras.Model(inputs, h)
        opt = getattr(so, name)(ss.WarmupCosine(0.01, 4, TOTAL), weight_decay=0.05, groups=[
            so.Group("g0", pattern="d0/*", multiplier=shared),
            so.Group("g1", pattern="d1/*", multiplier=ss.Cosine(0.5, 0.05, TOTAL),
                     weight_decay=0.2),
            so.Group("g2", pattern="d2/*", learning_rate=ss.Linear(0.02, 0.001, TOTAL)),
            so.Group("g3", pattern="d3/*", learning_rate=ss.Cosine(0.02, 0.0, TOTAL),
                     multiplier=0.5),
            so.Group("g4", pattern="d4/*", multiplier=ss.Linear(0.0, 1.0, 8)),
            so.Group("g5", pattern="d5/*", multiplier=ss.Exponential(1.0, 0.9)),
            so.Group("rest", multiplier=shared, frozen_until=6)])
        model.compile(optimizer=opt, loss="mse", jit_compile=False)
        x, y = _data()
        _fit(model, x, y)
        made = opt._stepsched.together
        monkeypatch.undo()
        return made, [keras.ops.convert_to_numpy(v) for v in model.weights + opt.variables]

    made, weights = run(True)
    assert made is not None and len(made.pairs) == 6  # all but g5's open-ended multiplier
    assert len(made.stacked.values[0]) == 1 + 6  # the ones, and each distinct schedule
    unmade, reference = run(False)
    assert unmade is None
    for a, b in zip(weights, reference, strict=True):
        np.testing.assert_array_equal(a, b)
