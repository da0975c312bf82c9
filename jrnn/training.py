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
or ``"mixed_float16"``; for float16 training scale the loss (e.g. by 2**15), divide the
gradients by the same factor and skip steps whose gradients are not finite, as Keras'
``LossScaleOptimizer`` does; :func:`make_train_step` does this with ``loss_scale=``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jrnn.rnn import ActivityLoss

# Which parameter each Keras regularizer / constraint argument governs.
_GOVERNED = {
    "kernel": "kernel",
    "recurrent": "recurrent_kernel",
    "bias": "bias",
    "embeddings": "embeddings",
    "beta": "beta",
    "gamma": "gamma",
}


def _governed_params(model: nnx.Module, suffix: str):
    """Yield ``(path, param, rule)`` for every non-None ``*_<suffix>`` rule of the model."""
    for path, module in nnx.iter_graph(model):
        if not isinstance(module, nnx.Module):
            continue
        for prefix, param_name in _GOVERNED.items():
            rule = getattr(module, f"{prefix}_{suffix}", None)
            param = getattr(module, param_name, None)
            if rule is not None and isinstance(param, nnx.Param):
                yield (*map(str, path), param_name), param, rule


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
    total = jnp.zeros((), jnp.float32)
    for _, param, rule in _governed_params(model, "regularizer"):
        total = total + rule(param[...]).astype(jnp.float32)
    for _, variable in nnx.iter_graph(model):
        if isinstance(variable, ActivityLoss):
            total = total + variable.get_value().astype(jnp.float32)
    return total


def apply_constraints(model: nnx.Module) -> None:
    """Project every constrained parameter in place (Keras does this after each update)."""
    for _, param, rule in _governed_params(model, "constraint"):
        param.set_value(rule(param[...]).astype(param[...].dtype))


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
    """State of :func:`keras_adam`."""

    count: jax.Array
    mu: Any
    nu: Any


def keras_adam(
    learning_rate: float = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
) -> optax.GradientTransformation:
    """Keras 3 ``Adam`` (``amsgrad=False``) exactly: ``m = b1 m + (1-b1) g``,
    ``v = b2 v + (1-b2) g^2``, ``w -= lr sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``.

    (optax.adam puts epsilon inside the bias correction, a ~1e-4 relative difference
    after a few steps at Keras' epsilon.)
    """

    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return KerasAdamState(jnp.zeros((), jnp.int32), zeros, zeros)

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        t = count.astype(jnp.float32)
        mu = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - beta_1), state.mu, updates)
        nu = jax.tree_util.tree_map(
            lambda v, g: v + (jnp.square(g) - v) * (1 - beta_2), state.nu, updates
        )
        alpha = learning_rate * jnp.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        new = jax.tree_util.tree_map(
            lambda m, v: (-alpha * m / (jnp.sqrt(v) + epsilon)).astype(m.dtype), mu, nu
        )
        return new, KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def _loss_fn(loss: str | Callable) -> Callable:
    if callable(loss):
        return loss
    losses = {
        "mse": lambda y, p: jnp.mean(jnp.square(p - y), axis=-1),
        "mean_squared_error": lambda y, p: jnp.mean(jnp.square(p - y), axis=-1),
        "mae": lambda y, p: jnp.mean(jnp.abs(p - y), axis=-1),
        "mean_absolute_error": lambda y, p: jnp.mean(jnp.abs(p - y), axis=-1),
        "binary_crossentropy": lambda y, p: jnp.mean(
            -(
                y * jnp.log(jnp.clip(p, 1e-7, 1 - 1e-7))
                + (1 - y) * jnp.log(jnp.clip(1 - p, 1e-7, 1 - 1e-7))
            ),
            axis=-1,
        ),
        "sparse_categorical_crossentropy": lambda y, p: (
            -jnp.take_along_axis(
                jnp.log(jnp.clip(p, 1e-7, 1.0)), y[..., None].astype(jnp.int32), axis=-1
            )[..., 0]
        ),
    }
    if loss not in losses:
        raise ValueError(f"Unknown loss {loss!r}; valid names: {sorted(losses)} or a callable.")
    return losses[loss]


def make_train_step(loss: str | Callable = "mse", *, loss_scale: float | None = None):
    """A jitted Keras ``fit`` step: ``step(model, optimizer, x, y) -> loss``.

    ``loss(y_true, y_pred)`` returns per-sample values (a Keras name or a callable); the
    step averages them over all remaining axes (Keras' ``sum_over_batch_size``), adds
    :func:`regularization_loss`, updates with ``optimizer`` (an ``nnx.Optimizer``) and
    applies the model's constraints. ``loss_scale`` multiplies the loss and divides the
    gradients (float16 training); a step with non-finite gradients is skipped.
    """
    per_sample = _loss_fn(loss)

    @nnx.jit
    def step(model, optimizer, x, y):
        def objective(model):
            pred = model(x, training=True) if _takes_training(model) else model(x)
            # Keras computes losses in float32 whatever the compute dtype.
            pred = pred.astype(jnp.float32)
            target = y.astype(jnp.float32) if jnp.issubdtype(y.dtype, jnp.floating) else y
            value = jnp.mean(per_sample(target, pred))
            value = value + regularization_loss(model)
            return value * loss_scale if loss_scale else value, value

        grads, value = nnx.grad(objective, has_aux=True)(model)
        if loss_scale:
            grads = jax.tree_util.tree_map(lambda g: g / loss_scale, grads)
            finite = jnp.all(
                jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)])
            )
            grads = jax.tree_util.tree_map(lambda g: jnp.where(finite, g, 0), grads)
        optimizer.update(model, grads)
        apply_constraints(model)
        return value

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
    model, optimizer, x, y, *, chunk_length: int, train_step=None, reset: bool = True
) -> list[float]:
    """Train on ``x (batch, time, ...)`` / ``y`` in consecutive time chunks (TBPTT).

    The model's stateful layers carry their states from one chunk to the next (they
    are read from state variables, so no gradient flows across chunk boundaries).
    ``y`` is split along time too when it has a time axis (``y.shape[1] == time``).
    Returns the per-chunk losses. ``train_step`` defaults to one shared
    :func:`make_train_step` ``("mse")`` step, compiled once per model structure and shapes
    across calls.
    """
    if chunk_length < 1:
        raise ValueError(f"truncated_bptt: `chunk_length` must be >= 1; received {chunk_length}.")
    stateful = [m for _, m in nnx.iter_graph(model) if getattr(m, "stateful", False)]
    if not stateful:
        raise ValueError("truncated_bptt needs a model with at least one stateful=True layer.")
    if reset:
        for layer in stateful:
            layer.reset_state()
    step = train_step or _DEFAULT_STEP
    time = x.shape[1]
    split_y = y.ndim > 1 and y.shape[1] == time
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
    "constraints",
    "data_parallel",
    "keras_adam",
    "make_train_step",
    "regularization_loss",
    "truncated_bptt",
]
