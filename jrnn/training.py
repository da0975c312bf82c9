"""Training jrnn models as Keras trains them: penalties, constraints, optimizers, TBPTT, sharding.

* :func:`regularization_loss` — what Keras' ``sum(model.losses)`` holds after a call:
  every weight regularizer's penalty plus the activity penalties of the last call.
* :func:`apply_constraints` / :func:`constraints` — Keras' post-update projections
  (``kernel_constraint``...), as an in-place call or as an optax transformation.
* :func:`keras_adam` — optax Adam with Keras' exact update (epsilon enters as in Keras).
* :func:`make_train_step` — one jitted Keras ``fit`` step: loss (Keras' default
  ``sum_over_batch_size`` reduction) + penalties, gradients, optimizer, constraints.
* :func:`truncated_bptt` — train a stateful model on long sequences chunk by chunk:
  states flow forward across chunks, gradients stop at chunk boundaries.
* :func:`data_parallel` — shard a batch over a device mesh with replicated parameters
  (``jax.sharding``; multi-host: call ``jax.distributed.initialize()`` first, nothing else).

Mixed precision: build layers with ``dtype="mixed_bfloat16"`` (no loss scaling needed)
or ``"mixed_float16"``; float16 training scales the loss, divides the gradients by the
same factor and skips the steps whose gradients are not finite, adapting the scale as
Keras 3's ``LossScaleOptimizer`` does: :func:`make_train_step` with ``loss_scale=``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jrnn import _checks
from jrnn.rnn import ActivityLoss

# Which parameter each Keras regularizer / constraint argument governs.
_GOVERNED = {
    "kernel": "kernel",
    "recurrent": "recurrent_kernel",
    "bias": "bias",
    "embeddings": "embeddings",
    "beta": "beta",
    "gamma": "gamma",
    "alpha": "alpha",
}


def _governed_params(model: nnx.Module, suffix: str, *, keys: bool = False):
    """Yield ``(path, param, rule)`` for every non-None ``*_<suffix>`` rule of the model
    (the path's entries as strings, or as the graph's keys with ``keys=True``)."""
    for path, module in nnx.iter_graph(model):
        if not isinstance(module, nnx.Module):
            continue
        for prefix, param_name in _GOVERNED.items():
            rule = getattr(module, f"{prefix}_{suffix}", None)
            param = getattr(module, param_name, None)
            if rule is not None and isinstance(param, nnx.Param):
                yield (*(path if keys else map(str, path)), param_name), param, rule


def _key(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def regularization_loss(model: nnx.Module) -> jax.Array:
    """Sum of weight penalties and of the last call's activity penalties (float32 scalar).

    Equals Keras' ``sum(model.losses)`` after the same forward call. Call it inside the
    loss function, after the forward pass, so that the activity term is differentiated.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(
            f"regularization_loss: `model` must be an nnx.Module (a jrnn layer or model); "
            f"received {type(model).__name__}."
        )
    total = jnp.zeros((), jnp.float32)
    for _, param, rule in _governed_params(model, "regularizer"):
        total = total + rule(param[...]).astype(jnp.float32)
    for _, variable in nnx.iter_graph(model):
        if isinstance(variable, ActivityLoss):
            total = total + variable.get_value().astype(jnp.float32)
    return total


def apply_constraints(model: nnx.Module, *, wrt: Any = nnx.Param) -> None:
    """Project every constrained parameter in place (Keras does this after each update).

    ``wrt``: an ``nnx`` filter; only the parameters it matches are projected (Keras
    constrains the variables its optimizer updates, not a frozen layer's).
    """
    matches = nnx.filterlib.to_predicate(wrt)
    for path, param, rule in _governed_params(model, "constraint", keys=True):
        if matches(path, param):
            param.set_value(rule(param[...]).astype(param[...].dtype))


def frozen_modules(model: nnx.Module) -> tuple[tuple[Any, ...], ...]:
    """The paths of ``model``'s modules whose ``trainable`` is False: Keras' frozen layers
    (an imported model records ``layer.trainable = False``; any module may be given it).
    :func:`make_train_step` neither differentiates nor updates their parameters."""
    return tuple(path for path, _ in _frozen(model))


def _frozen(model: nnx.Module):
    """``(path, module)`` for each module of ``model`` whose ``trainable`` is False."""
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and _checks.frozen(node):
            yield tuple(path), node


def _frozen_variables(model: nnx.Module) -> frozenset:
    """The paths (as ``nnx.state`` lists them) of every variable inside a frozen module,
    a variable shared with a trainable module too: Keras' ``trainable = False`` freezes
    the layer objects beneath, wherever else they are used."""
    inside = {
        id(variable)
        for _, node in _frozen(model)
        for _, variable in nnx.iter_graph(node)
        if isinstance(variable, nnx.Variable)
    }
    return frozenset(
        tuple(path)
        for path, variable in nnx.iter_graph(model)
        if isinstance(variable, nnx.Variable) and id(variable) in inside
    )


def trainable(model: nnx.Module, wrt: Any = nnx.Param) -> Any:
    """An ``nnx`` filter: the parameters matching ``wrt`` outside :func:`frozen_modules`,
    Keras' ``model.trainable_variables``. ``nnx.Optimizer(model, tx, wrt=trainable(model))``
    keeps no optimizer state for the frozen ones. It names parameters by path, so build it
    again after freezing or unfreezing a layer."""
    frozen = _frozen_variables(model)
    if not frozen:
        return wrt

    def outside_frozen(path, _):
        return tuple(path) not in frozen

    return nnx.All(wrt, outside_frozen)


def constraints(model: nnx.Module) -> optax.GradientTransformation:
    """An optax transformation that makes ``params + updates`` satisfy the model's constraints.

    Chain it last: ``optax.chain(optax.adam(1e-3), jrnn.training.constraints(model))``;
    its ``update`` needs ``params`` (``nnx.Optimizer`` passes them). Parameters without a
    constraint pass through unchanged.
    """
    rules = {path: rule for path, _, rule in _governed_params(model, "constraint")}
    paths = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    flat_rules = [rules.get(tuple(k for k in map(_key, path) if k != "value")) for path, _ in paths]

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("jrnn.training.constraints needs `params` in update().")
        u_leaves, treedef = jax.tree_util.tree_flatten(updates)
        p_leaves = jax.tree_util.tree_leaves(params)
        if len(u_leaves) != len(flat_rules):
            raise ValueError(
                f"jrnn.training.constraints: built for {len(flat_rules)} parameters, "
                f"received updates for {len(u_leaves)}."
            )
        out = [
            u if rule is None else (rule(p + u) - p).astype(u.dtype)
            for u, p, rule in zip(u_leaves, p_leaves, flat_rules)
        ]
        return jax.tree_util.tree_unflatten(treedef, out), state

    return optax.GradientTransformation(init, update)


class KerasAdamState(NamedTuple):
    """State of :func:`keras_adam` (``nu_hat``: AMSGrad's running maximum, else None)."""

    count: jax.Array
    mu: Any
    nu: Any
    nu_hat: Any = None


def _clip_by_norm(g: jax.Array, clip: float) -> jax.Array:
    """Keras' ``clip_by_norm``: ``g * clip / max(|g|, clip)``."""
    norm = jnp.sqrt(jnp.sum(jnp.square(g)))
    return g * clip / jnp.maximum(norm, clip)


def keras_adam(
    learning_rate: float = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    amsgrad: bool = False,
    weight_decay: float | None = None,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
    global_clipnorm: float | None = None,
) -> optax.GradientTransformation:
    """Keras 3 ``Adam`` exactly: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``w -= lr sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)`` (``v``: its running maximum
    with ``amsgrad``).

    As Keras' optimizers: the gradients are first clipped (``clipnorm`` per variable,
    ``clipvalue`` elementwise, or ``global_clipnorm`` over all), and ``weight_decay``
    subtracts ``lr * weight_decay * w`` from each weight before the step (it needs the
    parameters: ``nnx.Optimizer`` passes them). (optax.adam puts epsilon inside the bias
    correction, a ~1e-4 relative difference after a few steps at Keras' epsilon.)
    """
    if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
        raise ValueError(
            "keras_adam: pass at most one of `clipnorm`, `clipvalue` and `global_clipnorm` "
            "(Keras refuses several too)."
        )

    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return KerasAdamState(jnp.zeros((), jnp.int32), zeros, zeros, zeros if amsgrad else None)

    def update(updates, state, params=None):
        if clipnorm is not None:
            updates = jax.tree_util.tree_map(lambda g: _clip_by_norm(g, clipnorm), updates)
        if clipvalue is not None:
            updates = jax.tree_util.tree_map(lambda g: jnp.clip(g, -clipvalue, clipvalue), updates)
        if global_clipnorm is not None:
            leaves = jax.tree_util.tree_leaves(updates)
            norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in leaves))
            scale = global_clipnorm / jnp.maximum(norm, global_clipnorm)
            updates = jax.tree_util.tree_map(lambda g: g * scale, updates)
        count = state.count + 1
        t = count.astype(jnp.float32)
        mu = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - beta_1), state.mu, updates)
        nu = jax.tree_util.tree_map(
            lambda v, g: v + (jnp.square(g) - v) * (1 - beta_2), state.nu, updates
        )
        nu_hat = jax.tree_util.tree_map(jnp.maximum, state.nu_hat, nu) if amsgrad else None
        alpha = learning_rate * jnp.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        new = jax.tree_util.tree_map(
            lambda m, v: (-alpha * m / (jnp.sqrt(v) + epsilon)).astype(m.dtype),
            mu,
            nu_hat if amsgrad else nu,
        )
        if weight_decay:
            if params is None:
                raise ValueError("keras_adam: `weight_decay` needs the parameters in update().")
            new = jax.tree_util.tree_map(
                lambda u, w: u - (learning_rate * weight_decay * w).astype(u.dtype), new, params
            )
        return new, KerasAdamState(count, mu, nu, nu_hat)

    return optax.GradientTransformation(init, update)


def _same_rank(y: Any, p: Any) -> tuple[Any, Any]:
    """Keras' ``squeeze_or_expand_to_same_rank``: ranks that differ by one are matched by
    dropping (or, for rank 1, adding) a trailing size-1 axis."""
    if y.ndim == p.ndim + 1 and y.shape[-1] == 1:  # y (..., 1)
        if p.ndim == 1:
            p = p[..., None]
        else:
            y = y[..., 0]
    elif p.ndim == y.ndim + 1 and p.shape[-1] == 1:  # output (..., 1)
        if y.ndim == 1:
            y = y[..., None]
        else:
            p = p[..., 0]
    return y, p


def _elementwise(name: str, fn: Callable) -> Callable:
    def loss(y, p):
        given, output = y.shape, p.shape
        y, p = _same_rank(y, p)
        if y.shape != p.shape:  # no silent broadcasting ((B,) against (B, 2) and the like)
            raise ValueError(
                f"loss {name!r}: `y` of shape {given} does not match the model output's "
                f"shape {output} (Keras matches ranks by a trailing axis of size 1 only)."
            )
        return jnp.mean(fn(y, p), axis=-1)

    return loss


def _sparse_categorical(y, p):
    if y.ndim == p.ndim and y.shape[-1] == 1:  # labels (..., 1), as Keras accepts
        y = y[..., 0]
    if y.shape != p.shape[:-1]:
        raise ValueError(
            f"loss 'sparse_categorical_crossentropy': `y` of shape {y.shape} must hold one "
            f"label per output row, shape {p.shape[:-1]} (or {(*p.shape[:-1], 1)})."
        )
    logp = jnp.log(jnp.clip(p, 1e-7, 1.0))
    labels = y.astype(jnp.int32)
    loss = -jnp.take_along_axis(logp, jnp.clip(labels, 0, p.shape[-1] - 1)[..., None], axis=-1)
    # A label outside [0, classes) gives NaN (TensorFlow raises; a jitted step cannot, and
    # NumPy's indexing would take -1 as the last class).
    return jnp.where((labels < 0) | (labels >= p.shape[-1]), jnp.nan, loss[..., 0])


def _binary_crossentropy(y, p):
    p = jnp.clip(p, 1e-7, 1 - 1e-7)
    return -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))


def _categorical_crossentropy(y, p):
    p = p / jnp.sum(p, axis=-1, keepdims=True)  # Keras normalises the probabilities
    return -jnp.sum(y * jnp.log(jnp.clip(p, 1e-7, 1 - 1e-7)), axis=-1)


def _categorical(y, p):
    if y.shape != p.shape:
        raise ValueError(
            f"loss 'categorical_crossentropy': `y` (one-hot) must have the output's shape "
            f"{p.shape}; received {y.shape}."
        )
    return _categorical_crossentropy(y, p)


_LOSSES = {
    "categorical_crossentropy": _categorical,
    "mse": _elementwise("mse", lambda y, p: jnp.square(p - y)),
    "mean_squared_error": _elementwise("mean_squared_error", lambda y, p: jnp.square(p - y)),
    "mae": _elementwise("mae", lambda y, p: jnp.abs(p - y)),
    "mean_absolute_error": _elementwise("mean_absolute_error", lambda y, p: jnp.abs(p - y)),
    "binary_crossentropy": _elementwise("binary_crossentropy", _binary_crossentropy),
    "sparse_categorical_crossentropy": _sparse_categorical,
}


def _loss_fn(loss: str | Callable) -> Callable:
    if callable(loss):
        return loss
    if loss not in _LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; valid names: {sorted(_LOSSES)} or a callable.")
    return _LOSSES[loss]


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _reduce(values: Any, mask: Any, sample_weight: Any) -> jax.Array:
    """Keras' ``reduce_weighted_values`` with ``sum_over_batch_size``: the output mask
    (scaled so that the mean runs over the unmasked positions) times ``sample_weight``
    (ranks matched by a trailing axis of size 1), times the per-sample losses, summed
    and divided by their count. A ``(B,)`` weight on ``(B, T)`` losses weighs every step
    of its sample, as tf.keras (Keras 3 broadcasts it against the time axis: an error,
    or with ``B == T`` a weight per step)."""
    weight = None
    if mask is not None and jnp.shape(mask) == values.shape:
        m = jnp.asarray(mask, jnp.float32)
        weight = m * (m.size / (jnp.sum(m) + 1e-7))
    if sample_weight is not None:
        sw = jnp.asarray(sample_weight, jnp.float32)
        per_sample = 0 < sw.ndim < values.ndim and sw.shape == values.shape[: sw.ndim]
        if per_sample and not (sw.ndim == values.ndim - 1 and values.shape[-1] == 1):
            sw = sw.reshape(sw.shape + (1,) * (values.ndim - sw.ndim))  # every step alike
            sw = jnp.broadcast_to(sw, values.shape)
        values, sw = _same_rank(values, sw)
        if sw.ndim == values.ndim and all(a in (1, b) for a, b in zip(sw.shape, values.shape)):
            sw = jnp.broadcast_to(sw, values.shape)  # (B, 1) on (B, T): as Keras broadcasts
        if sw.shape != values.shape:
            raise ValueError(
                f"make_train_step: `sample_weight` of shape {sw.shape} does not match the "
                f"per-sample losses' shape {values.shape}."
            )
        weight = sw if weight is None else sw * weight.reshape(values.shape)
    if weight is not None:
        values = values * weight
    return jnp.sum(values) / values.size


def class_weight_to_sample_weight(
    y: Any, class_weight: dict, *, one_hot: bool | None = None
) -> jax.Array:
    """Keras ``fit(class_weight=...)`` as the ``sample_weight`` to hand to a
    :func:`make_train_step` step: each target's class looked up in ``class_weight``
    (``{class id: weight}``; classes not in it weigh 1.0, as in Keras).

    ``y`` as the step takes it:

    * class ids ``(B,)`` or ``(B, 1)`` -> weights ``(B,)`` (float ids are rounded, as Keras);
    * one-hot or probability rows ``(B, C)`` -> ``(B,)`` from the ``argmax``, as Keras;
    * per-step targets of a sequence output, ``(B, T, C)`` one-hot, ``(B, T, 1)`` or
      ``(B, T)`` ids -> ``(B, T)`` per-step weights (Keras refuses these).

    A float ``y`` whose last axis is longer than 1 is read as one-hot, and so is an integer
    ``(B, T, C)``. An integer ``y`` of shape ``(B, N)`` is either ``B`` one-hot rows or
    ``B`` sequences of ``N`` ids: say which with ``one_hot`` (Keras reads it as one-hot);
    ``one_hot`` overrides the rule for any ``y``. Raises ValueError for a ``class_weight``
    that is not a dict of integer class ids to numbers, and for a ``y`` of rank 0 or above
    3.
    """
    if not isinstance(class_weight, dict) or not class_weight:
        raise ValueError(
            "class_weight_to_sample_weight: `class_weight` must be a non-empty dict "
            f"{{class id: weight}}; received {class_weight!r}."
        )
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
            raise ValueError(
                "class_weight_to_sample_weight: `class_weight`'s keys must be class ids "
                f"(integers >= 0); received {key!r}."
            )
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ValueError(
                "class_weight_to_sample_weight: `class_weight`'s values must be numbers; "
                f"received {value!r} for class {key}."
            )
    y = jnp.asarray(y)
    if not 1 <= y.ndim <= 3:
        raise ValueError(
            "class_weight_to_sample_weight: `y` must be (B,), (B, 1), (B, C), (B, T), "
            f"(B, T, 1) or (B, T, C); received shape {y.shape}."
        )
    floating = jnp.issubdtype(y.dtype, jnp.floating)
    if one_hot is None:
        if y.ndim == 2 and y.shape[-1] > 1 and not floating:
            raise ValueError(
                "class_weight_to_sample_weight: an integer `y` of shape "
                f"{y.shape} is either one-hot rows or sequences of class ids; pass "
                "one_hot=True (Keras' reading) or one_hot=False."
            )
        one_hot = y.ndim > 1 and y.shape[-1] > 1 and (bool(floating) or y.ndim == 3)
    if one_hot:
        if y.ndim == 1:
            raise ValueError(
                "class_weight_to_sample_weight: one_hot=True needs `y` with a class axis "
                f"last; received shape {y.shape}."
            )
        ids = jnp.argmax(y, axis=-1)
    else:
        ids = y[..., 0] if y.ndim > 1 and y.shape[-1] == 1 else y
        ids = jnp.round(ids).astype(jnp.int32) if floating else ids.astype(jnp.int32)
    table = np.ones(max(class_weight) + 1, np.float32)
    for key, value in class_weight.items():
        table[key] = value
    inside = (ids >= 0) & (ids < table.size)
    return jnp.where(inside, jnp.asarray(table)[jnp.clip(ids, 0, table.size - 1)], 1.0)


#: Keras' ``LossScaleOptimizer`` defaults (``initial_scale``, ``dynamic_growth_steps``).
_KERAS_INITIAL_SCALE = 2.0**15
_KERAS_GROWTH_STEPS = 2000


def _check_loss_scale(loss_scale: Any, dynamic: Any, dynamic_growth_steps: Any) -> float | None:
    """Validate :func:`make_train_step`'s loss-scale arguments; return the (initial) scale."""
    if not isinstance(dynamic, (bool, np.bool_)):
        raise ValueError(f"make_train_step: `dynamic` must be True or False; received {dynamic!r}.")
    _checks.positive_int(dynamic_growth_steps, "dynamic_growth_steps", "make_train_step")
    if dynamic_growth_steps > np.iinfo(np.int32).max:  # Keras' step_counter is int32
        raise ValueError(
            "make_train_step: `dynamic_growth_steps` must be at most 2**31 - 1 (the step "
            f"counter is int32, as Keras'); received {dynamic_growth_steps!r}."
        )
    if loss_scale is None:
        if not dynamic:
            raise ValueError(
                "make_train_step: dynamic=False needs the fixed `loss_scale` (a number, "
                "e.g. 2**15); received loss_scale=None."
            )
        return None
    if isinstance(loss_scale, str) and loss_scale == "dynamic":
        if not dynamic:
            raise ValueError(
                "make_train_step: loss_scale='dynamic' with dynamic=False; pass a number "
                "as the fixed scale, or leave `dynamic` True."
            )
        return _KERAS_INITIAL_SCALE
    scale = None
    if not isinstance(loss_scale, (bool, np.bool_)) and isinstance(
        loss_scale, (int, float, np.integer, np.floating)
    ):
        with np.errstate(over="ignore", under="ignore"):
            try:  # the scale is float32, as Keras': 1e39 would be inf, 1e-50 zero
                scale = float(np.float32(loss_scale))
            except OverflowError:  # an int past float64's range
                scale = None
    if scale is None or not np.isfinite(scale) or scale <= 0:
        raise ValueError(
            "make_train_step: `loss_scale` must be None (no scaling), 'dynamic' (Keras' "
            "initial_scale 2**15) or a number > 0 that is finite and not zero in float32 "
            f"(e.g. 2**15); received {loss_scale!r}."
        )
    return scale


def _loss_scale_state(optimizer: Any, initial_scale: float) -> None:
    """Give ``optimizer`` Keras' loss-scale variables ``dynamic_scale`` (float32) and
    ``step_counter`` (int32) as ``nnx.OptState``, unless it holds them already."""
    scale = getattr(optimizer, "dynamic_scale", None)
    counter = getattr(optimizer, "step_counter", None)
    if isinstance(scale, nnx.Variable) and isinstance(counter, nnx.Variable):
        return
    if scale is not None or counter is not None:
        raise ValueError(
            "make_train_step: the optimizer's `dynamic_scale` / `step_counter` must both be "
            "nnx.Variable (the loss-scale state a dynamic step creates); received "
            f"{type(scale).__name__} / {type(counter).__name__}."
        )
    optimizer.dynamic_scale = nnx.OptState(jnp.asarray(initial_scale, jnp.float32))
    optimizer.step_counter = nnx.OptState(jnp.zeros((), jnp.int32))


def _optimizer_filter(optimizer: Any) -> Any:
    """The ``wrt`` filter of an ``nnx.Optimizer`` (or ``nnx.ModelAndOptimizer``)."""
    if not isinstance(optimizer, nnx.Optimizer):
        raise ValueError(
            "make_train_step: `optimizer` must be an nnx.Optimizer (or nnx.ModelAndOptimizer); "
            f"received {type(optimizer).__name__}."
        )
    return optimizer.wrt


def _update(model: nnx.Module, optimizer: Any, grads: Any, wrt: Any) -> None:
    """``optimizer``'s update with ``grads`` (the parameters ``wrt`` matches), then the
    constraints of those parameters. Frozen parameters that the optimizer also holds get
    zero gradients and keep their values (as Keras, whatever the optimizer's decay)."""
    kept = nnx.state(model, nnx.All(optimizer.wrt, nnx.Not(wrt)))
    if jax.tree_util.tree_leaves(kept):
        grads = nnx.merge_state(jax.tree_util.tree_map(jnp.zeros_like, kept), grads)
        kept = jax.tree_util.tree_map(lambda v: v, kept)  # values before the update
    if isinstance(optimizer, nnx.ModelAndOptimizer):
        optimizer.update(grads)
    else:
        optimizer.update(model, grads)
    if jax.tree_util.tree_leaves(kept):
        nnx.update(model, kept)
    apply_constraints(model, wrt=wrt)


def make_train_step(
    loss: str | Callable = "mse",
    *,
    loss_scale: float | str | None = None,
    dynamic: bool = True,
    dynamic_growth_steps: int = _KERAS_GROWTH_STEPS,
):
    """A jitted Keras ``fit`` step: ``step(model, optimizer, x, y, sample_weight=None)
    -> loss``.

    ``loss(y_true, y_pred)`` returns per-sample values (a Keras name or a callable); the
    step averages them over all remaining axes (Keras' ``sum_over_batch_size``), adds
    :func:`regularization_loss`, updates with ``optimizer`` (an ``nnx.Optimizer``) and
    applies the model's constraints. As Keras:

    * named losses match ``y``'s rank to the output's by a trailing axis of size 1 (``y``
      ``(B,)`` for an output ``(B, 1)``) and refuse other shapes instead of broadcasting;
    * a model that gives its output mask (an imported Keras model, whose ``Embedding
      (mask_zero=True)`` or ``Masking`` mask reaches the output) averages over the
      unmasked positions only;
    * a model with several outputs takes ``y`` as a list and sums the outputs' losses;
    * ``sample_weight`` (``(B,)``, or ``(B, T)`` per step; a list for several outputs)
      weights the per-sample losses, whose sum is divided by their count (a ``(B,)``
      weight on ``(B, T)`` losses weighs every step of its sample, as tf.keras).

    Loss scaling (float16 training), Keras 3's ``LossScaleOptimizer(initial_scale=
    loss_scale, dynamic_growth_steps=dynamic_growth_steps)``: the loss is multiplied by the
    scale, the gradients are divided by it, and a step whose scaled gradients are not all
    finite is skipped (parameters, optimizer state and constraints left as they were;
    BatchNormalization's moving statistics and stateful layers' states, updated by the
    forward pass, advance as in Keras). The scale is dynamic: a skipped step halves it;
    ``dynamic_growth_steps`` finite steps in a row double it. Either resets the count.
    The step returns the unscaled loss.

    Args:
        loss: a Keras loss name or ``loss(y_true, y_pred) -> per-sample values``.
        loss_scale: None (no scaling), ``"dynamic"`` (Keras' ``initial_scale``, 2**15) or
            the initial scale, a number > 0.
        dynamic: False keeps ``loss_scale`` fixed (tf.keras' ``dynamic=False``; unlike
            tf.keras, and Keras 3's ``loss_scale_factor``, non-finite steps are still
            skipped).
        dynamic_growth_steps: finite steps in a row after which the scale doubles
            (Keras' default 2000).

    The dynamic scale lives on the optimizer, as Keras' variables of the same names:
    ``optimizer.dynamic_scale`` (float32) and ``optimizer.step_counter`` (int32, finite
    steps since the scale last changed), ``nnx.OptState`` variables the first step creates
    (``loss_scale`` the initial value) and later steps, jitted, update; they persist across
    calls and are part of ``nnx.state(optimizer)``. To resume from a saved
    ``nnx.state(optimizer)`` (Orbax, ``nnx.replace_by_pure_dict``), call
    ``step.init(optimizer)`` on the fresh optimizer first: it creates that state (the
    dynamic step has this ``init``). (tf.keras' optimizer differs: its scale never falls
    below 1 and a skipped step still counts in ``iterations``.)

    Frozen layers (Keras' ``trainable = False``, which imported models keep; see
    :func:`frozen_modules`) are neither differentiated, updated nor constrained, and a
    frozen BatchNormalization normalises with its moving statistics, as Keras. Only the
    parameters the optimizer's ``wrt`` matches are trained (``wrt=trainable(model)``
    keeps no optimizer state for the frozen ones); ``nnx.ModelAndOptimizer`` works too.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from flax import nnx
        >>> import jrnn
        >>> layer = jrnn.LSTM(2, 3, dtype="mixed_float16", rngs=nnx.Rngs(0))
        >>> optimizer = nnx.Optimizer(layer, optax.sgd(0.1), wrt=nnx.Param)
        >>> step = jrnn.training.make_train_step("mse", loss_scale="dynamic")
        >>> x, y = jnp.ones((4, 5, 3)), jnp.zeros((4, 2))
        >>> loss = step(layer, optimizer, x, y)
        >>> float(optimizer.dynamic_scale[...]), int(optimizer.step_counter[...])
        (32768.0, 1)
        >>> loss = step(layer, optimizer, x, jnp.full((4, 2), jnp.inf))  # skipped
        >>> float(optimizer.dynamic_scale[...]), int(optimizer.step_counter[...])
        (16384.0, 0)
    """
    per_sample = _loss_fn(loss)
    initial_scale = _check_loss_scale(loss_scale, dynamic, dynamic_growth_steps)
    growth_steps = int(dynamic_growth_steps)

    @nnx.jit
    def jitted_step(model, optimizer, x, y, sample_weight=None):
        if initial_scale is None:
            scale = None
        elif dynamic:
            scale = optimizer.dynamic_scale.get_value()
        else:
            scale = jnp.asarray(initial_scale, jnp.float32)

        def objective(model):
            train = {"training": True} if _takes_training(model) else {}
            if getattr(type(model), "is_imported_keras_model", False):  # its output mask
                pred, masks = model.call_with_mask(x, None, **train)
            else:
                pred, masks = model(x, **train), None
            preds, ys = _as_list(pred), _as_list(y)
            masks = _as_list(masks) if masks is not None else [None] * len(preds)
            if len(preds) != len(ys):
                raise ValueError(
                    f"make_train_step: the model has {len(preds)} outputs; `y` must be a list "
                    f"of as many targets; received {len(ys)}."
                )
            weights = (
                list(sample_weight)
                if isinstance(sample_weight, (list, tuple))
                else [sample_weight] * len(preds)  # one array: the same for every output
            )
            if len(weights) != len(preds):
                raise ValueError(
                    f"make_train_step: `sample_weight` must be one array or a list of "
                    f"{len(preds)} (one per output); received {len(weights)}."
                )
            value = jnp.zeros((), jnp.float32)
            for p, t, m, w in zip(preds, ys, masks, weights):
                # Keras computes losses in float32 whatever the compute dtype.
                p = jnp.asarray(p).astype(jnp.float32)
                t = jnp.asarray(t)
                t = t.astype(jnp.float32) if jnp.issubdtype(t.dtype, jnp.floating) else t
                value = value + _reduce(per_sample(t, p), m, w)
            value = value + regularization_loss(model)
            return value if scale is None else value * scale, value

        wrt = trainable(model, _optimizer_filter(optimizer))
        grads, value = nnx.grad(objective, argnums=nnx.DiffState(0, wrt), has_aux=True)(model)
        if scale is None:
            _update(model, optimizer, grads, wrt)
            return value
        # Keras checks the scaled gradients, then divides them by the scale in float32.
        finite = jnp.all(
            jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)])
        )
        grads = jax.tree_util.tree_map(
            lambda g: jnp.where(finite, g.astype(jnp.float32) / scale, 0).astype(g.dtype), grads
        )
        before = jax.tree_util.tree_map(lambda v: v, nnx.state((model, optimizer)))
        _update(model, optimizer, grads, wrt)
        after = nnx.state((model, optimizer))
        nnx.update((model, optimizer), jax.tree_util.tree_map(
            lambda new, old: jnp.where(finite, new, old), after, before
        ))  # fmt: skip
        if dynamic:  # Keras: halve on a skipped step; double after growth_steps finite ones
            counter = optimizer.step_counter.get_value()
            grow = finite & (counter == growth_steps - 1)
            optimizer.dynamic_scale.set_value(
                jnp.where(finite, jnp.where(grow, scale * 2.0, scale), scale * 0.5)
            )
            optimizer.step_counter.set_value(
                jnp.where(finite & ~grow, counter + 1, 0).astype(counter.dtype)
            )
        return value

    if initial_scale is None or not dynamic:
        return jitted_step

    def step(model, optimizer, x, y, sample_weight=None):
        _loss_scale_state(optimizer, initial_scale)  # outside jit: Python attributes
        return jitted_step(model, optimizer, x, y, sample_weight)

    def init(optimizer):
        """Give ``optimizer`` the loss-scale state now (the first step would): a fresh
        optimizer then has the state tree of a saved one, to restore into."""
        _loss_scale_state(optimizer, initial_scale)

    step.init = init
    return step


#: truncated_bptt's step when none is given: one jitted function for every call, so that
#: a call per epoch compiles once per model structure and shapes (a fresh step per call
#: compiled anew each time: ~440 ms and ~60 more memory maps a call for a small LSTM).
_DEFAULT_STEP = make_train_step()


def _takes_training(model) -> bool:
    import inspect

    try:
        return "training" in inspect.signature(model.__call__).parameters
    except (TypeError, ValueError):
        return False


def truncated_bptt(
    model,
    optimizer,
    x,
    y,
    *,
    chunk_length: int,
    train_step=None,
    reset: bool = True,
    y_has_time: bool | None = None,
) -> list[float]:
    """Train on ``x (batch, time, ...)`` / ``y`` in consecutive time chunks (TBPTT).

    The model's stateful layers carry their states from one chunk to the next (they
    are read from state variables, so no gradient flows across chunk boundaries).
    ``y`` is split along time too when it has a time axis: ``y_has_time`` says so, and
    None guesses it from ``y.shape[1] == time`` (set it where a per-sequence target's
    width equals the number of steps).
    Returns the per-chunk losses. ``train_step`` defaults to one shared
    :func:`make_train_step` ``("mse")`` step, compiled once per model structure and shapes
    across calls.
    """
    chunk_length = _checks.positive_int(chunk_length, "chunk_length", "truncated_bptt")
    stateful = [m for _, m in nnx.iter_graph(model) if getattr(m, "stateful", False)]
    if not stateful:
        raise ValueError("truncated_bptt needs a model with at least one stateful=True layer.")
    if reset:
        for layer in stateful:
            layer.reset_state()
    step = train_step or _DEFAULT_STEP
    time = x.shape[1]
    split_y = y.ndim > 1 and y.shape[1] == time if y_has_time is None else bool(y_has_time)
    if split_y and (y.ndim < 2 or y.shape[1] != time):
        raise ValueError(
            f"truncated_bptt: y_has_time=True needs `y` of shape (batch, {time}, ...); "
            f"received {y.shape}."
        )
    losses = []
    for start in range(0, time, chunk_length):
        xs = x[:, start : start + chunk_length]
        ys = y[:, start : start + chunk_length] if split_y else y
        losses.append(float(step(model, optimizer, xs, ys)))
    return losses


def data_parallel(
    model: nnx.Module, x: Any, mesh: jax.sharding.Mesh | None = None, axis: str = "batch"
) -> tuple[Any, jax.sharding.Mesh]:
    """Replicate ``model``'s state on every device of ``mesh`` and shard ``x`` on its batch axis.

    Returns ``(x_sharded, mesh)``; call the model under ``nnx.jit`` as usual — XLA
    partitions the batch. ``mesh`` defaults to all devices on one ``axis``.
    """
    if mesh is None:
        mesh = jax.make_mesh((len(jax.devices()),), (axis,))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state = nnx.state(model)
    nnx.update(model, jax.device_put(state, replicated))
    spec = jax.sharding.PartitionSpec(axis)
    x_sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, spec))
    return x_sharded, mesh


__all__ = [
    "KerasAdamState",
    "apply_constraints",
    "class_weight_to_sample_weight",
    "constraints",
    "data_parallel",
    "frozen_modules",
    "keras_adam",
    "make_train_step",
    "regularization_loss",
    "trainable",
    "truncated_bptt",
]
