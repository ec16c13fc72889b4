"""The private Keras touch-points of ``stepsched._keras`` against the installed Keras.

Each test names the attribute or behaviour it relies on, so a Keras release
that changes one fails here by name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import stepsched as ss
from stepsched import _keras


def _model(rate, **optimizer_kwargs):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(rate, **optimizer_kwargs), loss="mse")
    return model


def test_optimizer_learning_rate_attribute_holds_the_rate_object():
    schedule = ss.Exponential(0.1, 0.9)
    assert _keras.rate_of(_model(schedule).optimizer) is schedule, "optimizer._learning_rate"
    assert isinstance(_keras.rate_of(_model(0.1).optimizer), keras.Variable)


def test_replacing_the_schedule_is_what_the_optimizer_evaluates_and_saves():
    model = _model(ss.Constant(0.1))
    before = len(model.optimizer.variables)
    _keras.replace_schedule(model.optimizer, ss.Constant(0.25))
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == 0.25
    assert len(model.optimizer.variables) == before
    config = model.optimizer.get_config()["learning_rate"]
    back = keras.saving.deserialize_keras_object(config)
    assert isinstance(back, ss.Constant) and back.arg("value") == 0.25


def test_raw_step_counter_under_gradient_accumulation():
    model = _model(0.1, gradient_accumulation_steps=2)
    counter = _keras.step_variable(model.optimizer)
    assert isinstance(counter, keras.Variable), "optimizer._iterations"
    x = np.zeros((8, 2), "float32")
    model.fit(x, x[:, :1], batch_size=1, verbose=0)
    assert int(keras.ops.convert_to_numpy(counter.value)) == 8
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4


@pytest.mark.parametrize("accumulation", [None, 3])
def test_update_count_is_what_kerass_iterations_property_gives(accumulation):
    model = _model(0.1, gradient_accumulation_steps=accumulation)
    _keras.step_variable(model.optimizer).assign(7)
    assert int(keras.ops.convert_to_numpy(_keras.update_count(model.optimizer))) == int(
        keras.ops.convert_to_numpy(model.optimizer.iterations)) == (7 // (accumulation or 1))


def test_retrace_builds_a_new_train_function():
    model = _model(0.1)
    x = np.zeros((4, 2), "float32")
    model.fit(x, x[:, :1], verbose=0)
    old = model.train_function
    _keras.retrace(model)
    assert model.train_function is not old, "model.make_train_function(force=True)"


def test_weights_files_walk_into_a_metric_attached_to_the_optimizer(tmp_path):
    """The plateau state relies on Keras's saving walking an optimizer's attributes."""
    from stepsched.callbacks.plateau import PlateauState

    model = _model(0.1)
    model.optimizer.build(model.trainable_variables)
    model.optimizer.stepsched_plateau = PlateauState(0.125, {"best": 3.0})
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    other = _model(0.1)
    other.optimizer.build(other.trainable_variables)
    other.optimizer.stepsched_plateau = PlateauState()
    other.load_weights(path)
    assert other.optimizer.stepsched_plateau.multiplier_value == 0.125
    assert other.optimizer.stepsched_plateau.values == {"best": 3.0}


def test_variable_index_maps_keras_and_backend_variables():
    """``optimizer._get_variable_index``: stepsched's groups find a variable's group by it,
    also for the ``tf.Variable`` TensorFlow's update step receives."""
    model = _model(0.1)
    model.optimizer.build(model.trainable_variables)
    for i, v in enumerate(model.trainable_variables):
        assert _keras.variable_index(model.optimizer, v) == i
        if keras.backend.backend() == "tensorflow":
            assert _keras.variable_index(model.optimizer, v.value) == i


def test_current_learning_rate_is_the_rate_at_the_raw_step():
    """``optimizer._get_current_learning_rate()``: stepsched's groups evaluate the base rate
    once per step with it and override it while a group's weight decay runs."""
    model = _model(ss.Linear(1.0, 0.0, 10))
    model.optimizer.build(model.trainable_variables)
    _keras.step_variable(model.optimizer).assign(4)
    value = float(keras.ops.convert_to_numpy(_keras.current_learning_rate(model.optimizer)))
    assert value == np.float32(0.6)


def test_apply_calls_the_private_methods_stepsched_overrides():
    """``apply`` runs ``_apply_weight_decay(variables)``, which reads the rate through
    ``_get_current_learning_rate()``, then ``update_step`` per variable: a subclass
    recording the calls sees that order (stepsched.optimizers relies on it)."""
    calls = []

    class Recording(keras.optimizers.SGD):
        def _apply_weight_decay(self, variables):
            calls.append(("decay", len(variables)))
            return super()._apply_weight_decay(variables)

        def _get_current_learning_rate(self):
            calls.append(("rate",))
            return super()._get_current_learning_rate()

        def _backend_update_step(self, grads, trainable_variables, learning_rate):
            calls.append(("backend", len(trainable_variables)))
            return super()._backend_update_step(grads, trainable_variables, learning_rate)

        def update_step(self, gradient, variable, learning_rate):
            calls.append(("update",))
            return super().update_step(gradient, variable, learning_rate)

    assert set(_keras.OVERRIDDEN_PRIVATE_METHODS) <= set(vars(keras.optimizers.Optimizer)) | {
        m for c in keras.optimizers.Optimizer.__mro__ for m in vars(c)}
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=Recording(0.1, weight_decay=0.01), loss="mse", run_eagerly=True)
    x = np.ones((2, 2), "float32")
    model.train_on_batch(x, x[:, :1])
    assert calls[0] == ("decay", 2)
    assert ("rate",) in calls[:3]
    assert calls.count(("update",)) == 2
    assert calls.index(("update",)) > calls.index(("backend", 2)) > calls.index(("decay", 2))


def _host_reads(fn) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import workloads

    with workloads.SyncCounter() as counter:
        fn()
    return counter.total


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="Keras's fused torch updates")
def test_torch_fused_updates_take_these_values_as_python_numbers():
    """On torch Keras swaps each built-in optimizer for a class whose
    ``_parallel_update_step`` updates all variables with ``torch._foreach_*``; some values
    go to torch as Python numbers (``alpha=``), so a tensor there is read back to the host.
    Measured for every float hyperparameter, one at a time as a tensor: the reads must be
    those ``_keras.TORCH_FUSED_NUMBER_ARGUMENTS`` lists, and each fused update stepsched
    leaves out must still read the host with every hyperparameter a number (the rate is a
    tensor at every step)."""
    import inspect

    from stepsched.optimizers._live import live
    from stepsched.optimizers.core import _schedulable

    left_out = {"SGD", "Adadelta", "Nadam"}
    fused = {}
    for name in dir(keras.optimizers):
        base = getattr(keras.optimizers, name)
        if isinstance(base, type) and issubclass(base, keras.optimizers.Optimizer):
            cls = type(base.__new__(base))
            if cls is not base and hasattr(cls, "_parallel_update_step"):
                fused[name] = base
    assert set(fused) == set(_keras.TORCH_FUSED_NUMBER_ARGUMENTS) | left_out

    def reads(base, tensor: str | None) -> int:
        variable = keras.Variable(np.ones((3,), "float32"))
        # a non-zero momentum, so the optimizers that have one keep their momentum slots
        momentum = {"momentum": 0.5} if "momentum" in inspect.signature(base).parameters \
            else {}
        opt = base(learning_rate=0.1, **momentum)
        opt.build([variable])
        if tensor is not None:
            value = getattr(opt, tensor)
            object.__setattr__(opt, tensor, live(value if isinstance(value, float) else 0.1))
        rate = keras.ops.convert_to_tensor(0.1)
        grads = [keras.ops.ones((3,))]
        return _host_reads(lambda: _keras.fused_update(opt, grads, [variable], rate))

    for name, base in fused.items():
        always = reads(base, None)
        if name in left_out:
            assert always > 0, f"{name}'s fused update no longer reads the host"
            assert _keras.torch_fused_class(base) is None
            continue
        numbers = {h for h in _schedulable(base) if reads(base, h) > always}
        assert always == 0, name
        assert numbers == _keras.TORCH_FUSED_NUMBER_ARGUMENTS[name], name
        assert _keras.torch_fused_class(base) is type(base.__new__(base))


def test_set_rate_puts_any_rate_object_back_as_it_was():
    """``optimizer._learning_rate``: the LR range test puts a schedule in place of a float
    rate's variable and the variable back, the optimizer's variables unchanged."""
    model = _model(0.1)
    model.optimizer.build(model.trainable_variables)
    variables = list(model.optimizer.variables)
    rate = _keras.rate_of(model.optimizer)
    _keras.set_rate(model.optimizer, ss.Constant(0.5))
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == 0.5
    _keras.set_rate(model.optimizer, rate)
    assert _keras.rate_of(model.optimizer) is rate
    assert list(model.optimizer.variables) == variables
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == np.float32(0.1)


def test_inner_optimizer_and_read_step_under_loss_scaling():
    inner = keras.optimizers.SGD(0.1)
    outer = keras.optimizers.LossScaleOptimizer(inner)
    assert _keras.inner_optimizer(outer) is inner
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=outer, loss="mse")
    x = np.zeros((4, 2), "float32")
    model.fit(x, x[:, :1], batch_size=2, verbose=0)
    assert _keras.read_step(outer) == _keras.read_step(inner) == 2


def test_gradient_accumulators_are_the_optimizers_accumulating_variables():
    """``optimizer._accumulated_gradients``: one per trainable variable, emptied after each
    update (the LR range test starts from empty accumulators)."""
    model = _model(0.1, gradient_accumulation_steps=2)
    model.optimizer.build(model.trainable_variables)
    accumulators = _keras.gradient_accumulators(model.optimizer)
    assert [tuple(a.shape) for a in accumulators] == \
        [tuple(v.shape) for v in model.trainable_variables]
    x = np.ones((2, 2), "float32")
    model.fit(x, x[:, :1], batch_size=1, verbose=0, shuffle=False)
    assert all(not np.any(keras.ops.convert_to_numpy(a.value)) for a in accumulators)
    assert _keras.gradient_accumulators(_model(0.1).optimizer) == []


def test_compile_state_is_built_by_the_first_fit():
    """``model._compile_loss``, ``model._compile_metrics``: unbuilt after ``compile`` (with
    metrics), built by the first ``fit()``; the LR range test marks them unbuilt again."""
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    parts = _keras.compile_state(model)
    assert len(parts) == 2 and all(p.built is False for p in parts)
    x = np.zeros((4, 2), "float32")
    model.fit(x, x[:, :1], verbose=0)
    assert all(p.built is True for p in _keras.compile_state(model))


def test_global_seed_generator_lives_in_kerass_global_state():
    """``keras.src.backend.common.global_state``: ``keras.random.*(seed=None)`` draws from
    the ``SeedGenerator`` kept there under ``GLOBAL_SEED_GENERATOR``."""
    store = _keras.global_state()
    assert store is not None
    saved = store.get_global_attribute(_keras.GLOBAL_SEED_GENERATOR)
    try:
        store.set_global_attribute(_keras.GLOBAL_SEED_GENERATOR, None)
        keras.random.uniform((1,))
        generator = store.get_global_attribute(_keras.GLOBAL_SEED_GENERATOR)
        assert isinstance(generator, keras.random.SeedGenerator)
    finally:
        store.set_global_attribute(_keras.GLOBAL_SEED_GENERATOR, saved)


def test_running_callback_list_is_found_from_a_hook():
    """The ``CallbackList`` dispatching a hook is a few frames up the stack."""
    found = []

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            found.append(_keras.running_callback_list(self))

    probe, other = Probe(), keras.callbacks.History()
    model = _model(0.1)
    x = np.zeros((2, 2), "float32")
    model.fit(x, x[:, :1], verbose=0, callbacks=[probe, other])
    assert isinstance(found[0], keras.callbacks.CallbackList)
    assert any(c is probe for c in found[0].callbacks)
    assert _keras.running_callback_list(probe) is None


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch's private API")
def test_torch_private_functions():
    """``torch._foreach_mul``, ``torch._C._disabled_torch_function_impl``,
    ``torch.Tensor._make_subclass``: what the per-group fused update and ``live`` use."""
    import torch

    values = [torch.arange(3.0), torch.ones(2, dtype=torch.float64)]
    copies = _keras.torch_copies(values)
    values[0].add_(1.0)
    assert copies[0].tolist() == [0.0, 1.0, 2.0] and copies[1].dtype == torch.float64

    class Sub(torch.Tensor):
        __torch_function__ = _keras.torch_plain_results()

    t = _keras.torch_as_subclass(Sub, torch.tensor(2.0))
    assert type(t) is Sub and float(t) == 2.0
    assert type(t * 2) is torch.Tensor


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="Keras's fused torch updates")
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_torch_fused_update_at_a_rate_per_variable_is_kerass_per_rate(name, amsgrad):
    """``_keras.fused_update_rates`` (Keras's fused Adam update with one rate per variable,
    for groups that differ only in rate) gives bit for bit what Keras's own fused update
    gives, called once per rate; ``torch_scale`` and ``uses_weight_decay`` as used for the
    groups' weight decay."""
    import torch

    assert set(_keras.TORCH_FUSED_PER_VARIABLE_RATES) <= set(_keras.TORCH_FUSED_NUMBER_ARGUMENTS)
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (2,), (4,)]
    start = [rng.normal(size=s).astype("float32") for s in shapes]
    grads = [torch.as_tensor(rng.normal(size=s).astype("float32")) for s in shapes]
    rates = torch.tensor([0.3, 0.007])

    def optimizer():
        variables = [keras.Variable(w) for w in start]
        opt = getattr(keras.optimizers, name)(learning_rate=0.1, amsgrad=amsgrad)
        opt.build(variables)
        opt.iterations.assign(5)
        return opt, variables

    opt, variables = optimizer()
    for _ in range(3):
        _keras.fused_update_rates(opt, grads, variables, rates, [0, 1, 0])
    ref, ref_vars = optimizer()
    for _ in range(3):
        _keras.fused_update(ref, [grads[0], grads[2]], [ref_vars[0], ref_vars[2]], rates[0])
        _keras.fused_update(ref, [grads[1]], [ref_vars[1]], rates[1])
    for a, b in zip(variables + opt.variables, ref_vars + ref.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))

    tensors = [torch.ones(2), torch.ones(3)]
    _keras.torch_scale(tensors, [torch.tensor(0.5), torch.tensor(2.0)])
    assert tensors[0].tolist() == [0.5, 0.5] and tensors[1].tolist() == [2.0] * 3
    opt = keras.optimizers.AdamW(0.1, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    kept, skipped = keras.Variable(np.ones(2), name="kernel"), keras.Variable(np.ones(2),
                                                                               name="bias")
    opt.build([kept, skipped])
    assert _keras.uses_weight_decay(opt, kept) and not _keras.uses_weight_decay(opt, skipped)


def test_loss_scale_optimizer_takes_these_paths_on_non_finite_gradients():
    """``LossScaleOptimizer._stateful_handle_non_finite_grads`` (``apply``: TensorFlow,
    torch) and ``_stateless_handle_non_finite_grads`` (``stateless_apply``: JAX) run at a
    step whose gradients are not finite, and only then: stepsched's LossScaleOptimizer
    counts the steps it skips there."""
    calls = []

    class Recording(keras.optimizers.LossScaleOptimizer):
        def _stateful_handle_non_finite_grads(self):
            calls.append("stateful")
            return super()._stateful_handle_non_finite_grads()

        def _stateless_handle_non_finite_grads(self, optimizer_variables, trainable_variables):
            calls.append("stateless")
            return super()._stateless_handle_non_finite_grads(optimizer_variables,
                                                              trainable_variables)

    assert set(_keras.OVERRIDDEN_LOSS_SCALE_METHODS) <= set(
        vars(keras.optimizers.LossScaleOptimizer))
    variable = keras.Variable(np.zeros(2, "float32"))
    opt = Recording(keras.optimizers.SGD(0.1))
    opt.build([variable])
    bad = [keras.ops.convert_to_tensor(np.array([np.inf, 0.0], "float32"))]
    good = [keras.ops.convert_to_tensor(np.ones(2, "float32"))]
    if keras.backend.backend() != "jax":  # JAX trains with stateless_apply
        opt.apply(good, [variable])
        assert calls == []
        opt.apply(bad, [variable])
        assert calls == ["stateful"]
        calls.clear()
        return  # stateless_apply is JAX's (TensorFlow refuses it)
    # on JAX both branches of the cond are traced: the scale it returns tells them apart
    values = [v.value for v in opt.variables]
    scale = next(i for i, v in enumerate(opt.variables) if v is opt.dynamic_scale)
    _, after = opt.stateless_apply(values, bad, [variable.value])
    assert "stateless" in calls
    assert float(after[scale]) == opt.initial_scale / 2


def test_schedule_step_is_the_counter_plus_the_steps_a_wrapper_skipped():
    """``schedule_step``: ``optimizer._iterations`` as it is, or plus what the callable in
    ``optimizer._stepsched_skipped`` gives (stepsched's LossScaleOptimizer, count="batches")."""
    model = _model(ss.Linear(1.0, 0.0, 10))
    model.optimizer.build(model.trainable_variables)
    _keras.step_variable(model.optimizer).assign(4)
    assert _keras.schedule_step(model.optimizer) is _keras.step_variable(model.optimizer)
    model.optimizer._stepsched_skipped = lambda: keras.Variable(3, dtype="int",
                                                                         trainable=False)
    assert int(keras.ops.convert_to_numpy(_keras.schedule_step(model.optimizer))) == 7
    assert _keras.read_step(model.optimizer) == 7


def test_the_hyperparameters_keras_tests_in_python_are_the_listed_ones():
    """``_keras.TESTED_HYPERPARAMETERS``: the hyperparameters a built-in optimizer's update
    tests in Python (``if self.momentum != 0``), found in Keras's source of every
    ``update_step`` (and, on torch, every fused ``_parallel_update_step``). A scheduled one
    is a tensor there: stepsched's ``Live`` value answers the test on TF and JAX, and on
    torch the update runs outside ``torch.compile``."""
    import inspect
    import re

    from stepsched.optimizers import OPTIMIZERS

    found = {}
    for name, cls in OPTIMIZERS.items():
        base = cls._keras_class()
        sources = [inspect.getsource(base.update_step)]
        fused = _keras.torch_fused_class(base) or type(base.__new__(base))
        if "_parallel_update_step" in vars(fused):
            sources.append(inspect.getsource(fused._parallel_update_step))
        tested = sorted({h for h in cls.hyperparameter_names for src in sources
                         if re.search(rf"\bif self\.{h}\b", src)})
        if tested:
            found[name] = tuple(tested)
    assert found == _keras.TESTED_HYPERPARAMETERS
