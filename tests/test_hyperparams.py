"""In-graph schedules for every optimizer hyperparameter (stepsched.optimizers).

References: Keras's own optimizer run eagerly with the attribute assigned
before every batch (the only way Keras can do it), torch ``OneCycleLR`` with
``cycle_momentum=True``, and the momentum read back from a probe's successive
weight changes.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

import stepsched as ss
import stepsched.optimizers as so
from conftest import BACKEND

N = 16
SPE = 1 if BACKEND == "torch" else 8  # torch runs one step per execution


def _schedule_for(base, name):
    default = inspect.signature(base.__init__).parameters[name].default
    if name == "weight_decay" or not isinstance(default, float) or default == 0:
        return ss.Linear(0.2, 0.02, N)
    return ss.Linear(default, default * 0.8, N)


def _data(n=64, d=4, k=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, (x @ rng.normal(size=(d, k))).astype("float32")


def _model(optimizer, eager=False, spe=1, jit=BACKEND != "torch"):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Dense(3, name="body")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=optimizer, loss="mse", run_eagerly=eager, steps_per_execution=spe,
                  jit_compile=jit and not eager)
    return model


class _AssignEachBatch(keras.callbacks.Callback):
    """What Keras allows: assign the attribute before each batch of an eager step."""

    def __init__(self, schedules):
        super().__init__()
        self.schedules = schedules

    def on_train_batch_begin(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        for name, s in self.schedules.items():
            setattr(self.model.optimizer, name, float(s.at(step)))


def _flat(model):
    return np.concatenate([w.ravel() for w in model.get_weights()])


def _fit(model, x, y, **kw):
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, **kw)
    return _flat(model)


@pytest.mark.parametrize("name", sorted(so.OPTIMIZERS))
def test_every_builtin_optimizer_follows_every_hyperparameter_schedule(name):
    cls = so.OPTIMIZERS[name]
    base = cls._keras_class()
    schedules = {h: _schedule_for(base, h) for h in cls.hyperparameter_names}
    nominal = {h: float(s.at(0)) for h, s in schedules.items()}
    x, y = _data()
    if BACKEND == "tensorflow" and name == "ScheduleFreeAdamW":
        # Keras's own eager and compiled ScheduleFreeAdamW differ on TensorFlow, so the
        # eager reference is no reference there; check that this is still so.
        eager = _fit(_model(base(0.01), eager=True), x, y)
        compiled = _fit(_model(base(0.01)), x, y)
        assert np.abs(eager - compiled).max() > 1e-3
        pytest.skip("Keras's ScheduleFreeAdamW differs between eager and compiled on TF")
    reference = _fit(_model(base(0.01, **nominal), eager=True), x, y,
                     callbacks=[_AssignEachBatch(schedules)])
    ours = _fit(_model(cls(0.01, **schedules), spe=SPE), x, y)
    constant = _fit(_model(base(0.01, **nominal), eager=True), x, y)  # eager: no compile
    scale = max(1.0, np.abs(reference).max())
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-6 * scale)
    assert np.abs(reference - constant).max() > 1e-4  # the schedules did change the run


@pytest.mark.backend_independent
def test_the_list_covers_every_builtin_keras_optimizer():
    builtin = {n for n in dir(keras.optimizers)
               if isinstance(getattr(keras.optimizers, n), type)
               and issubclass(getattr(keras.optimizers, n), keras.optimizers.Optimizer)}
    assert builtin - set(so.OPTIMIZERS) == {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}
    for name, cls in so.OPTIMIZERS.items():
        assert issubclass(cls, getattr(keras.optimizers, name))
        assert "weight_decay" in so.HYPERPARAMETERS[name]
    assert so.HYPERPARAMETERS["SGD"] == ("momentum", "weight_decay")
    assert {"beta_1", "beta_2"} <= set(so.HYPERPARAMETERS["Lion"])


def test_clear_errors_for_what_cannot_be_scheduled():
    with pytest.raises(TypeError, match="initial_accumulator_value.*once"):
        so.Adagrad(0.1, initial_accumulator_value=ss.Linear(0.1, 0.2, 4))
    with pytest.raises(TypeError, match="cannot schedule 'nesterov'"):
        so.SGD(0.1, momentum=0.9, nesterov=ss.Constant(1.0))
    with pytest.raises(TypeError, match="muon_a.*Newton-Schulz"):
        so.Muon(0.1, muon_a=ss.Constant(3.0))
    with pytest.raises(TypeError, match="SGD cannot schedule .beta_1.: it is not a float hyperparameter"):
        so.SGD(0.1, beta_1=ss.Constant(0.9))
    with pytest.raises(TypeError, match="stepsched schedule"):
        so.SGD(0.1, momentum=keras.optimizers.schedules.ExponentialDecay(0.9, 10, 0.5))


def test_outside_the_step_the_attribute_is_the_nominal_float():
    opt = so.SGD(0.1, momentum=ss.Linear(0.9, 0.5, 10))
    assert opt.momentum == pytest.approx(0.9) and isinstance(opt.momentum, float)
    assert isinstance(opt.hyperparameter_schedules["momentum"], ss.Linear)
    assert opt.get_config()["momentum"]["class_name"] == "Linear"


def test_momentum_schedule_starting_at_zero_keeps_the_slots():
    """Keras's SGD skips its momentum buffer while ``momentum == 0``; a scheduled momentum
    is one formula at every step, ``m_t = mu_t m_{t-1} - lr g`` (zero included)."""
    schedule = ss.Linear(0.0, 0.9, 12)
    opt = so.SGD(0.1, momentum=schedule)
    w = _probe(opt, 12)
    assert opt.momentum == 0.0
    assert len(opt.variables) == 3  # iterations, rate, the kernel's momentum slot
    d = np.diff(np.concatenate([[0.0], w]))
    np.testing.assert_allclose(d[0], -0.1, rtol=1e-6)
    np.testing.assert_allclose((d[1:] + 0.1) / d[:-1], schedule.at(range(1, 12)), rtol=1e-4)


# --------------------------------------------------------------------- the probe
def _probe(optimizer, steps):
    """A linear model whose loss is its output ``w * 1``: the gradient is 1 at every step,
    so with SGD the weight change is ``d_t = m_t d_{t-1} - lr_t`` and
    ``m_t = (d_t + lr_t) / d_{t-1}``."""
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False,
                                                   kernel_initializer="zeros")(inputs))
    model.compile(optimizer=optimizer, loss=lambda y, p: keras.ops.mean(p),
                  jit_compile=BACKEND != "torch")
    history = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            history.append(float(self.model.get_weights()[0][0, 0]))

    x = np.ones((steps, 1), "float32")
    model.fit(x, x, batch_size=1, verbose=0, shuffle=False, callbacks=[Record()])
    return np.asarray(history, "float64")


def test_probe_gives_back_the_momentum_at_every_step():
    steps = 12
    momentum = ss.Linear(0.95, 0.5, steps)
    rate = ss.Constant(0.1)
    w = _probe(so.SGD(rate, momentum=momentum), steps)
    d = np.diff(np.concatenate([[0.0], w]))
    recovered = (d[1:] + 0.1) / d[:-1]
    np.testing.assert_allclose(recovered, momentum.at(range(1, steps)), rtol=1e-4)


def test_steps_per_execution_and_two_fits_continue_the_schedule():
    if BACKEND == "torch":
        pytest.skip("steps_per_execution must be 1 on torch")
    momentum = ss.Linear(0.95, 0.5, 20)
    x, y = _data()
    one = _model(so.SGD(0.05, momentum=momentum), spe=1)
    one.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    eight = _model(so.SGD(0.05, momentum=momentum), spe=8, jit=False)
    eight.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    eight.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(_flat(eight), _flat(one), atol=1e-6)


# --------------------------------------------------------------------- torch OneCycleLR
def test_one_cycle_with_cycle_momentum_matches_torch_step_by_step():
    torch = pytest.importorskip("torch")
    total, max_lr = 24, 0.05
    lr = ss.OneCycle(max_lr, total_steps=total)
    beta_1 = lr.momentum()
    x, y = _data(n=total * 4, d=3, k=1, seed=3)
    keras.utils.set_random_seed(2)
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(inputs))
    w0, b0 = (np.array(v) for v in dense.get_weights())
    model.compile(optimizer=so.Adam(lr, beta_1=beta_1, epsilon=1e-8), loss="mse",
                  steps_per_execution=SPE, jit_compile=BACKEND != "torch")
    model.fit(x, y, batch_size=4, verbose=0, shuffle=False)

    lin = torch.nn.Linear(3, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w0.T, dtype=torch.float64))
        lin.bias.copy_(torch.tensor(b0, dtype=torch.float64))
    opt = torch.optim.Adam(lin.parameters(), lr=max_lr, eps=1e-8)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total,
                                                cycle_momentum=True)
    betas = []
    for i in range(total):
        xb = torch.tensor(x[4 * i:4 * i + 4], dtype=torch.float64)
        yb = torch.tensor(y[4 * i:4 * i + 4], dtype=torch.float64)
        betas.append(opt.param_groups[0]["betas"][0])
        opt.zero_grad()
        torch.nn.functional.mse_loss(lin(xb), yb).backward()
        opt.step()
        sched.step()
    np.testing.assert_allclose(beta_1.at(range(total)), betas, rtol=1e-6)
    assert max(betas) - min(betas) > 0.09  # the cycle is there
    np.testing.assert_allclose(dense.get_weights()[0].T, lin.weight.detach().numpy(),
                               rtol=0, atol=2e-5)
    np.testing.assert_allclose(dense.get_weights()[1], lin.bias.detach().numpy(), atol=2e-5)


def test_sgd_momentum_cycle_is_torch_s_momentum_sequence():
    torch = pytest.importorskip("torch")
    total = 30
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total,
                                                cycle_momentum=True, three_phase=True)
    theirs = []
    for _ in range(total):
        theirs.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    lr = ss.OneCycle(0.1, total_steps=total, three_phase=True)
    w = _probe(so.SGD(0.1, momentum=lr.momentum()), total)
    d = np.diff(np.concatenate([[0.0], w]))
    recovered = (d[1:] + 0.1) / d[:-1]
    np.testing.assert_allclose(recovered, theirs[1:], rtol=2e-4)


# --------------------------------------------------------------------- saving
def _continue_after(tmp_path, how):
    schedules = dict(beta_1=ss.Linear(0.95, 0.8, 32), weight_decay=ss.Cosine(0.1, 0.0, 32))
    x, y = _data()
    straight = _model(so.AdamW(0.01, **schedules), spe=SPE)
    straight.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    first = _model(so.AdamW(0.01, **schedules), spe=SPE)
    first.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    if how == "model":
        path = str(tmp_path / "m.keras")
        first.save(path)
        again = keras.saving.load_model(path)
        assert isinstance(again.optimizer, so.AdamW)
        assert isinstance(again.optimizer.hyperparameter_schedules["weight_decay"], ss.Cosine)
    else:
        path = str(tmp_path / "m.weights.h5")
        first.save_weights(path)
        again = _model(so.AdamW(0.01, **schedules), spe=SPE)
        again.optimizer.build(again.trainable_variables)
        again.load_weights(path)
    again.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(_flat(again), _flat(straight), atol=1e-6)


def test_load_model_resumes_exactly(tmp_path):
    _continue_after(tmp_path, "model")


def test_weights_file_resumes_exactly(tmp_path):
    _continue_after(tmp_path, "weights")


class _DieAt(keras.callbacks.Callback):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch >= self.batch:
            raise RuntimeError("killed")


@pytest.mark.parametrize("with_groups", [False, True])
def test_backup_and_restore_mid_epoch_resumes_exactly(tmp_path, with_groups):
    """Backups every 4 steps; killed mid-epoch after a backup; a fresh model resumes. Keras
    restores the step and restarts the epoch from its first batch, so the reference is a
    run that saw the restored steps' batches, then the whole fit: the hyperparameter and
    group schedules must carry on from the restored step for the weights to match."""
    def optimizer():
        groups = [so.Group("body", pattern="body/*", multiplier=ss.Linear(0.0, 1.0, 24),
                           beta_1=ss.Linear(0.8, 0.9, 48)), so.Group("head")] \
            if with_groups else None
        return so.AdamW(ss.Cosine(0.02, 0.002, 64), beta_1=ss.Linear(0.95, 0.8, 64),
                        weight_decay=ss.Linear(0.1, 0.0, 64), groups=groups)

    spe = 1 if BACKEND == "torch" else 4
    x, y = _data()  # 16 batches per epoch
    fit = dict(batch_size=4, epochs=2, verbose=0, shuffle=False)
    backup = str(tmp_path / "backup")
    killed = _model(optimizer(), spe=spe)
    with pytest.raises(RuntimeError, match="killed"):
        killed.fit(x, y, callbacks=[keras.callbacks.BackupAndRestore(backup, save_freq=4),
                                    _DieAt(batch=10)], **fit)
    resumed = _model(optimizer(), spe=spe)
    resumed.fit(x, y, callbacks=[keras.callbacks.BackupAndRestore(backup, save_freq=4)], **fit)
    restored = int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) - 32
    assert restored == (8 if spe == 1 else 12)  # the last backup before the kill, mid-epoch
    reference = _model(optimizer(), spe=spe)
    reference.fit(x[:4 * restored], y[:4 * restored], **{**fit, "epochs": 1})
    reference.fit(x, y, **fit)
    np.testing.assert_allclose(_flat(resumed), _flat(reference), atol=1e-6)


def test_weights_files_load_into_a_plain_keras_optimizer_and_back(tmp_path):
    x, y = _data()
    ours = _model(so.Adam(0.01, beta_1=ss.Linear(0.9, 0.8, 16)), spe=SPE)
    ours.fit(x, y, batch_size=4, verbose=0)
    plain = _model(keras.optimizers.Adam(0.01))
    plain.optimizer.build(plain.trainable_variables)
    assert len(plain.optimizer.variables) == len(ours.optimizer.variables)
    path = str(tmp_path / "w.weights.h5")
    ours.save_weights(path)
    plain.load_weights(path)
    for a, b in zip(plain.optimizer.variables, ours.optimizer.variables, strict=False):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    plain.save_weights(path)
    back = _model(so.Adam(0.01, beta_1=ss.Linear(0.9, 0.8, 16)))
    back.optimizer.build(back.trainable_variables)
    back.load_weights(path)
    assert int(keras.ops.convert_to_numpy(back.optimizer.iterations)) == 16


# --------------------------------------------------------------------- wrappers
def test_inside_a_loss_scale_optimizer():
    momentum = ss.Linear(0.95, 0.5, N)
    x, y = _data()
    inner = so.SGD(0.05, momentum=momentum)
    wrapped = _model(keras.optimizers.LossScaleOptimizer(inner), spe=SPE)
    ours = _fit(wrapped, x, y)
    reference = _fit(_model(keras.optimizers.SGD(0.05, momentum=0.95), eager=True), x, y,
                     callbacks=[_AssignEachBatch({"momentum": momentum})])
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_gradient_accumulation_reads_the_raw_counter_per_update():
    k = 2
    momentum = ss.Linear(0.95, 0.5, N // k).per_update(k)
    x, y = _data()
    model = _model(so.SGD(0.05, momentum=momentum, gradient_accumulation_steps=k), spe=1)
    ours = _fit(model, x, y)
    # at the update that completes micro-batches 2u, 2u+1 the raw counter is 2u+1
    reference = _model(keras.optimizers.SGD(0.05, momentum=0.95, gradient_accumulation_steps=k),
                       eager=True)

    class Assign(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            raw = int(keras.ops.convert_to_numpy(self.model.optimizer._iterations))
            self.model.optimizer.momentum = float(momentum.at(raw))

    np.testing.assert_allclose(ours, _fit(reference, x, y, callbacks=[Assign()]), atol=1e-6)


def test_durations_in_fractions_need_a_plan():
    opt = so.SGD(0.1, momentum=ss.OneCycle(0.1, total_steps=ss.fraction(1.0)).momentum())
    model = _model(opt)
    x, y = _data()
    with pytest.raises(ss.UnresolvedDurationError, match="optimizer.plan"):
        model.fit(x, y, batch_size=4, verbose=0)
    opt = so.SGD(0.1, momentum=ss.OneCycle(0.1, total_steps=ss.fraction(1.0)).momentum())
    assert opt.plan(steps_per_epoch=16, total_steps=16) is True
    assert opt.plan(steps_per_epoch=16, total_steps=16) is False
    planned = opt.hyperparameter_schedules["momentum"]
    np.testing.assert_array_equal(
        planned.at(range(16)), ss.OneCycle(0.1, total_steps=16).momentum().at(range(16)))
    _model(opt).fit(x, y, batch_size=4, verbose=0)
    # the config keeps the plan, as the rate's does: the schedule as written and what it
    # was planned for
    saved = opt.get_config()["momentum"]
    assert saved["class_name"] == "Planned"
    assert saved["config"]["schedule"]["class_name"] == "OneCycleMomentum"
    assert (saved["config"]["steps_per_epoch"], saved["config"]["total_steps"]) == (16, 16)


def test_the_migration_momentum_section_runs():
    """docs/migration.md, section "Momentum and beta_1": its code block runs."""
    import pathlib
    import re

    page = (pathlib.Path(__file__).parent.parent / "docs/migration.md").read_text()
    section = page[page.index("## Momentum and beta_1"):]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    namespace = {"__name__": "migration"}
    exec(compile(block, "docs/migration.md", "exec"), namespace)  # noqa: S102
    assert isinstance(namespace["optimizer"], so.AdamW)
    assert int(keras.ops.convert_to_numpy(namespace["optimizer"].iterations)) == 40
