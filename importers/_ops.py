"""Keras 3 operations recorded in Functional configs, replayed with ``jax.numpy``.

A Keras 3 Functional model records every ``keras.ops`` call made on symbolic tensors as a
graph node whose entry has ``"module": "keras.src.ops.<family>"`` and no weights. Keras
itself adds such nodes: a Functional model fed by ``Masking`` or ``Embedding(mask_zero=True)``
stores the mask computation as ``NotEqual``/``Any`` nodes and passes their output as the
``mask=`` argument of the next layer. Users add them with ``x[:, -1]`` (``GetItem``),
``a + b`` (``Add``), ``keras.ops.mean(x, axis=1)`` (``Mean``) and so on.

The entry's ``config`` holds the operation's constructor arguments (``axis``, ``keepdims``,
``dtype`` ...), its node's ``args``/``kwargs`` the call arguments, tensors among them given as
``__keras_tensor__`` references and constants as JSON (``__slice__``, ``__ellipsis__``,
``__numpy__``/``__tensor__`` arrays). :class:`KerasOp` applies one operation; its outputs carry
no Keras mask (Keras' ``Operation`` does not propagate masks). An operation jrnn does not
know raises :class:`~importers.errors.UnsupportedLayerError` naming it.

Example:
    >>> import jax.numpy as jnp
    >>> KerasOp("Sum", {"axis": 1, "keepdims": False})(jnp.ones((2, 3))).tolist()
    [3.0, 3.0]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from importers._files import is_op as is_op
from importers.errors import UnsupportedLayerError


def _unary(fn: Callable) -> Callable:
    return lambda x: fn(x)


def _as_float(x):
    """Keras' ``result_type(x, float)``: floats stay, integers and booleans become float32."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _signed_zeros(x):
    """-0.0 just below +0.0, as Keras' argmax/argmin see it (its backends replace -0.0 by
    -tiny first), so that a tie of -0.0 and 0.0 goes to 0.0."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return x
    negative_zero = (x == 0) & jnp.signbit(x)
    return jnp.where(negative_zero, -jnp.finfo(x.dtype).tiny, x)


def _binary(fn: Callable) -> Callable:
    return lambda x1, x2: fn(x1, x2)


def _reduce(fn: Callable) -> Callable:
    return lambda x, axis=None, keepdims=False: fn(x, axis=_axis(axis), keepdims=keepdims)


def _axis(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, list) else axis


def _frozen(value: Any) -> Any:
    """JSON lists as (nested) tuples: hashable, and what jnp takes for shapes and axes."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _indices(indices: Any) -> Any:
    """Indices written as a JSON list (``ops.take(x, [0, 2], axis=1)``) as an int array, as
    Keras converts them."""
    return jnp.asarray(indices) if isinstance(indices, (list, tuple)) else indices


def _where(condition, x1=None, x2=None):
    if x1 is None or x2 is None:
        raise ValueError(
            "Where: x1 and x2 are required (one-argument where has a data-"
            "dependent shape, which a compiled model cannot replay)."
        )
    return jnp.where(condition, x1, x2)


def _convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    if sparse or ragged:
        raise ValueError("ConvertToTensor: sparse/ragged tensors have no jrnn equivalent.")
    return jnp.asarray(x, dtype=dtype)


def _get_item(x, key):
    return x[tuple(key) if isinstance(key, list) else key]


_UNARY = {
    "Negative": jnp.negative,
    "Abs": jnp.abs,
    "Absolute": jnp.abs,
    "Square": jnp.square,
    "Sqrt": jnp.sqrt,
    "Exp": jnp.exp,
    "Expm1": jnp.expm1,
    "Log": jnp.log,
    "Log1p": jnp.log1p,
    "Tanh": jnp.tanh,
    "Sin": jnp.sin,
    "Cos": jnp.cos,
    "Sign": jnp.sign,
    "Floor": lambda x: jnp.floor(_as_float(x)),  # Keras: integers come out as floats
    "Ceil": lambda x: jnp.ceil(_as_float(x)),
    "Reciprocal": jnp.reciprocal,
    "LogicalNot": jnp.logical_not,
    "Erf": jax.scipy.special.erf,
    "Rsqrt": jax.lax.rsqrt,
    "Relu": jax.nn.relu,
    "Sigmoid": jax.nn.sigmoid,
    "Softplus": jax.nn.softplus,
    "Silu": jax.nn.silu,
}
_BINARY = {
    "Add": jnp.add,
    "Subtract": jnp.subtract,
    "Multiply": jnp.multiply,
    "Divide": jnp.true_divide,
    "TrueDivide": jnp.true_divide,
    "Power": jnp.power,
    "Maximum": jnp.maximum,
    "Minimum": jnp.minimum,
    "Equal": jnp.equal,
    "NotEqual": jnp.not_equal,
    "Greater": jnp.greater,
    "GreaterEqual": jnp.greater_equal,
    "Less": jnp.less,
    "LessEqual": jnp.less_equal,
    "LogicalAnd": jnp.logical_and,
    "LogicalOr": jnp.logical_or,
    "Matmul": jnp.matmul,
    "Dot": jnp.dot,
}
_REDUCTIONS = {
    "Mean": jnp.mean,
    "Sum": jnp.sum,
    "Any": jnp.any,
    "All": jnp.all,
    "Var": jnp.var,
    "Std": jnp.std,
    "Argmax": lambda x, axis=None, keepdims=False: jnp.argmax(
        _signed_zeros(x), axis=axis, keepdims=keepdims
    ),
    "Argmin": lambda x, axis=None, keepdims=False: jnp.argmin(
        _signed_zeros(x), axis=axis, keepdims=keepdims
    ),
    "Logsumexp": jax.scipy.special.logsumexp,
}

# Keras class name -> fn(*call_args, **call_kwargs, **constructor_args).
OPS: dict[str, Callable] = {
    **{k: _unary(f) for k, f in _UNARY.items()},
    **{k: _binary(f) for k, f in _BINARY.items()},
    **{k: _reduce(f) for k, f in _REDUCTIONS.items()},
    "Max": lambda x, axis=None, keepdims=False, initial=None: jnp.max(
        x, axis=_axis(axis), keepdims=keepdims, initial=initial
    ),
    "Min": lambda x, axis=None, keepdims=False, initial=None: jnp.min(
        x, axis=_axis(axis), keepdims=keepdims, initial=initial
    ),
    "Prod": lambda x, axis=None, keepdims=False, dtype=None: jnp.prod(
        x, axis=_axis(axis), keepdims=keepdims, dtype=dtype
    ),
    "Cumsum": lambda x, axis=None, dtype=None: jnp.cumsum(x, axis=axis, dtype=dtype),
    "Softmax": lambda x, axis=-1: jax.nn.softmax(x, axis=_axis(axis)),
    "LogSoftmax": lambda x, axis=-1: jax.nn.log_softmax(x, axis=_axis(axis)),
    "Gelu": lambda x, approximate=True: jax.nn.gelu(x, approximate=approximate),
    "Cast": lambda x, dtype: jnp.asarray(x).astype(dtype),
    "ConvertToTensor": _convert_to_tensor,
    "StopGradient": jax.lax.stop_gradient,
    "Clip": lambda x, x_min, x_max: jnp.clip(x, x_min, x_max),
    "Round": lambda x, decimals=0: jnp.round(x, decimals),
    "Where": _where,
    "GetItem": _get_item,
    "Reshape": lambda x, newshape: jnp.reshape(x, tuple(newshape)),
    "Transpose": lambda x, axes=None: jnp.transpose(x, _axis(axes)),
    "ExpandDims": lambda x, axis: jnp.expand_dims(x, _axis(axis)),
    "Squeeze": lambda x, axis=None: jnp.squeeze(x, _axis(axis)),
    "Swapaxes": lambda x, axis1, axis2: jnp.swapaxes(x, axis1, axis2),
    "Moveaxis": lambda x, source, destination: jnp.moveaxis(x, _axis(source), _axis(destination)),
    "Concatenate": lambda xs, axis=0: jnp.concatenate(list(xs), axis=axis),
    "Stack": lambda x, axis=0: jnp.stack(list(x), axis=axis),
    "Flip": lambda x, axis=None: jnp.flip(x, _axis(axis)),
    "Tile": lambda x, repeats: jnp.tile(x, _axis(repeats)),
    "Repeat": lambda x, repeats, axis=None: jnp.repeat(
        x, np.asarray(repeats) if isinstance(repeats, (list, tuple)) else repeats, axis=axis
    ),
    "Roll": lambda x, shift, axis=None: jnp.roll(x, _axis(shift), axis=_axis(axis)),
    "BroadcastTo": lambda x, shape: jnp.broadcast_to(x, tuple(shape)),
    "Einsum": lambda *operands, subscripts: jnp.einsum(subscripts, *operands),
    "Tensordot": lambda x1, x2, axes=2: jnp.tensordot(x1, x2, _axis(axes)),
    "Take": lambda x, indices, axis=None: jnp.take(x, _indices(indices), axis=axis),
    "TakeAlongAxis": lambda x, indices, axis=None: jnp.take_along_axis(x, indices, axis=axis),
    "OnesLike": lambda x, dtype=None: jnp.ones_like(x, dtype=dtype),
    "ZerosLike": lambda x, dtype=None: jnp.zeros_like(x, dtype=dtype),
    "Sort": lambda x, axis=-1: jnp.sort(x, axis=axis),
    "Argsort": lambda x, axis=-1: jnp.argsort(x, axis=axis),
    "Split": lambda x, indices_or_sections, axis=0: jnp.split(
        x, _axis(indices_or_sections), axis=axis
    ),
    "Unstack": lambda x, num=None, axis=0: [
        jnp.take(x, i, axis=axis) for i in range(x.shape[axis])
    ],
    "Pad": lambda x, pad_width, mode="constant", constant_values=None: jnp.pad(
        x,
        _frozen(pad_width),
        mode=mode,
        **({} if constant_values is None else {"constant_values": constant_values}),
    ),
}


def constant(value: Any) -> Any:
    """A node argument decoded from Keras' JSON (``__slice__``, ``__ellipsis__``, arrays)."""
    if isinstance(value, dict):
        cls, cfg = value.get("class_name"), value.get("config") or {}
        if cls == "__slice__":
            return slice(
                constant(cfg.get("start")), constant(cfg.get("stop")), constant(cfg.get("step"))
            )
        if cls == "__ellipsis__" or value == {"class_name": "__ellipsis__"}:
            return Ellipsis
        if cls in ("__numpy__", "__tensor__"):
            return np.asarray(cfg["value"], dtype=cfg.get("dtype"))
        return {k: constant(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [constant(v) for v in value]
    return value


class KerasOp(nnx.Module):
    """One recorded ``keras.ops`` call: ``KerasOp(class_name, config)(*args, **kwargs)``.

    ``config`` is the entry's constructor arguments (``name`` ignored); call arguments are
    those of the Keras operation's ``call`` (tensors, Python scalars, slices). No weights.
    """

    _registry: dict[str, Callable] = OPS
    _what = "keras.ops operation"
    # A Keras 3 operation node is not a layer: absent from Keras' ``model.layers``, so from
    # ``jrnn.inspect.layers_of`` (which an index or "*" chooses from) too.
    keras_operation = True

    def __init__(self, class_name: str, config: dict | None = None, *, name: str | None = None):
        if class_name not in self._registry:
            raise UnsupportedLayerError(
                class_name,
                name or class_name,
                detail=f"it is a {self._what} jrnn does not replay; supported: "
                f"{', '.join(sorted(self._registry))}",
            )
        params = {k: v for k, v in (config or {}).items() if k != "name"}
        try:
            inspect.signature(self._registry[class_name]).bind_partial(**params)
        except TypeError as err:
            raise UnsupportedLayerError(
                class_name,
                name or class_name,
                detail=f"its arguments {params} are not those jrnn replays ({err})",
            ) from None
        self.class_name, self.name = class_name, name
        self._params = tuple((k, _frozen(v)) for k, v in sorted(params.items()))
        _no_silent_64_bits(self, list(params.values()))  # at load, where the config says

    def check_call(self, args: list, kwargs: dict) -> None:
        """Refuse, at load, a recorded call the replay cannot make: arguments the function
        does not take, or lacks (``args``/``kwargs`` as the node records them, tensors as
        references)."""
        fn = self._registry[self.class_name]
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs, **dict(self._params))
        except TypeError as err:
            raise UnsupportedLayerError(
                self.class_name,
                self.name or self.class_name,
                detail=f"its recorded call does not fit the {self._what} jrnn replays ({err})",
            ) from None
        if fn is _where and None in (bound.arguments.get("x1"), bound.arguments.get("x2")):
            raise UnsupportedLayerError(
                self.class_name,
                self.name or self.class_name,
                detail="a one-argument where (the indices where a condition holds) has a "
                "data-dependent shape, which a compiled model cannot replay",
            )

    def __call__(self, *args: Any, training: bool = False, **kwargs: Any) -> Any:
        _no_silent_64_bits(self, [*args, *kwargs.values()])  # its config's: at load
        return self._registry[self.class_name](*args, **kwargs, **dict(self._params))

    def compute_mask(self, *args: Any, **kwargs: Any) -> None:
        """None: Keras operations do not propagate masks."""
        return None

    def keras_weights(self) -> list:
        """``[]``: operations hold no weights."""
        return []


_WIDE = ("float64", "int64", "uint64", "complex128")


def _no_silent_64_bits(op: KerasOp, values: list) -> None:
    """An operation asking for a 64-bit dtype (``ops.cast(x, "int64")``, ``tf.cast(x,
    tf.float64)``) while JAX's 64-bit mode is off would get the 32-bit type without a word
    (an int64 product past 2**31 wraps): refused, naming the cure."""
    wide = [v for v in values if isinstance(v, str) and v in _WIDE]
    if wide and not jax.config.jax_enable_x64:
        raise UnsupportedLayerError(
            op.class_name,
            op.name or op.class_name,
            detail=f"it asks for {wide[0]}, which JAX gives only in its 64-bit mode "
            "(jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1 before loading); "
            "without it the result would silently be 32-bit",
        )


# -- tf.keras 2: TFOpLambda / SlicingOpLambda ------------------------------------------------


def _tf_slice(input, slice_spec):
    spec = slice_spec if isinstance(slice_spec, list) else [slice_spec]
    key = tuple(
        slice(k["start"], k["stop"], k["step"])
        if isinstance(k, dict) and set(k) == {"start", "stop", "step"}
        else k
        for k in spec
    )
    return input[key]


def _tf_reduce(fn: Callable) -> Callable:
    def reduce(input_tensor, axis=None, keepdims=False):
        return fn(input_tensor, axis=_axis(axis), keepdims=keepdims)

    return reduce


def _tf_matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False):
    if transpose_a or adjoint_a:
        a = jnp.swapaxes(a, -1, -2)
    if transpose_b or adjoint_b:
        b = jnp.swapaxes(b, -1, -2)
    return jnp.matmul(a, b)


def _tf_cumsum(x, axis=0, exclusive=False, reverse=False):
    if reverse:
        x = jnp.flip(x, axis)
    if exclusive:  # the sums before each entry: x shifted one step along axis, 0 first
        x = jnp.moveaxis(x, axis, 0)
        x = jnp.moveaxis(jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]], axis=0), 0, axis)
    y = jnp.cumsum(x, axis=axis)
    return jnp.flip(y, axis) if reverse else y


def _tf_reduce_mean(input_tensor, axis=None, keepdims=False):
    """``tf.reduce_mean``: an integer tensor's mean stays integer, truncated toward 0."""
    x = jnp.asarray(input_tensor)
    if jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating):
        return jnp.mean(x, axis=_axis(axis), keepdims=keepdims)
    total = jnp.sum(x, axis=_axis(axis), keepdims=keepdims, dtype=x.dtype)
    count = x.size // max(total.size, 1) if x.size else 1
    return jax.lax.div(total, jnp.asarray(count, x.dtype))


def _tf_binary(fn: Callable) -> Callable:
    return lambda x, y: fn(x, y)


# TensorFlow elementwise functions -> the Keras operation they equal (one jnp choice each).
_TF_BINARY = {
    "__operators__.add": "Add",
    "math.add": "Add",
    "math.subtract": "Subtract",
    "math.multiply": "Multiply",
    "math.truediv": "TrueDivide",
    "math.pow": "Power",
    "math.maximum": "Maximum",
    "math.minimum": "Minimum",
    "math.equal": "Equal",
    "math.not_equal": "NotEqual",
    "math.greater": "Greater",
    "math.greater_equal": "GreaterEqual",
    "math.less": "Less",
    "math.less_equal": "LessEqual",
    "math.logical_and": "LogicalAnd",
    "math.logical_or": "LogicalOr",
}
_TF_UNARY = {
    "math.negative": "Negative",
    "math.abs": "Abs",
    "math.square": "Square",
    "math.sqrt": "Sqrt",
    "math.rsqrt": "Rsqrt",
    "math.exp": "Exp",
    "math.log": "Log",
    "math.tanh": "Tanh",
    "math.sigmoid": "Sigmoid",
    "math.logical_not": "LogicalNot",
}

# TensorFlow function name (TFOpLambda's ``function``) -> fn(first_argument, **kwargs), the
# keyword names TensorFlow's (``name=`` is dropped).
TF_OPS: dict[str, Callable] = {
    **{k: _tf_binary(_BINARY[op]) for k, op in _TF_BINARY.items()},
    **{k: _unary(_UNARY[op]) for k, op in _TF_UNARY.items()},
    **{
        k: _tf_reduce(f)
        for k, f in {
            "math.reduce_sum": jnp.sum,
            "math.reduce_max": jnp.max,
            "math.reduce_min": jnp.min,
            "math.reduce_prod": jnp.prod,
            "math.reduce_any": jnp.any,
            "math.reduce_all": jnp.all,
            "math.reduce_std": jnp.std,
            "math.reduce_variance": jnp.var,
            "math.reduce_logsumexp": jax.scipy.special.logsumexp,
        }.items()
    },
    "nn.relu": lambda features: jax.nn.relu(features),
    "nn.softmax": lambda logits, axis=None: jax.nn.softmax(
        logits, axis=-1 if axis is None else axis
    ),
    "identity": lambda input: input,
    "cast": lambda x, dtype: jnp.asarray(x).astype(getattr(dtype, "name", dtype)),  # tf.DType
    "where": lambda condition, x=None, y=None: _where(condition, x, y),
    "concat": lambda values, axis: jnp.concatenate(list(values), axis=axis),
    "stack": lambda values, axis=0: jnp.stack(list(values), axis=axis),
    "expand_dims": lambda input, axis: jnp.expand_dims(input, axis),
    "compat.v1.squeeze": lambda input, axis=None, squeeze_dims=None: jnp.squeeze(
        input, _axis(axis if axis is not None else squeeze_dims)
    ),
    "reshape": lambda tensor, shape: jnp.reshape(tensor, tuple(shape)),
    "compat.v1.transpose": lambda a, perm=None, conjugate=False: jnp.transpose(a, _axis(perm)),
    "tile": lambda input, multiples: jnp.tile(input, tuple(multiples)),
    "clip_by_value": lambda t, clip_value_min, clip_value_max: jnp.clip(
        t, clip_value_min, clip_value_max
    ),
    "linalg.matmul": _tf_matmul,
    "math.cumsum": _tf_cumsum,
    "math.reduce_mean": _tf_reduce_mean,
    "__operators__.getitem": _tf_slice,
}


class TFOpLambda(KerasOp):
    """A tf.keras 2 ``TFOpLambda``/``SlicingOpLambda`` layer (a TensorFlow function called on
    Keras tensors, e.g. ``tf.reduce_mean(x, axis=1)`` or ``x[:, -1]``), replayed with
    ``jax.numpy``: ``TFOpLambda("math.reduce_mean")(x, axis=1)``. TensorFlow functions
    outside :data:`TF_OPS` are refused by name. No weights, no mask.
    """

    _registry = TF_OPS
    _what = "TensorFlow function (TFOpLambda)"
    keras_operation = False  # a layer in tf.keras 2's ``model.layers``

    def check_call(self, args: list, kwargs: dict) -> None:
        super().check_call(args, {k: v for k, v in kwargs.items() if k != "name"})

    def __call__(self, *args: Any, training: bool = False, **kwargs: Any) -> Any:
        kwargs.pop("name", None)
        # tf.keras writes NumPy constants among the arguments as nested JSON lists.
        args = tuple(_constant(a) for a in args)
        kwargs = {k: _constant(v) for k, v in kwargs.items()}
        return super().__call__(*args, **kwargs)


def _constant(value: Any) -> Any:
    """A nested list of numbers as an array (a constant tf.keras recorded); else as given."""
    if isinstance(value, list) and value and _numbers(value):
        return np.asarray(value)
    return value


def _numbers(value: Any) -> bool:
    if isinstance(value, list):
        return all(_numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


TF_OP_CLASSES = ("TFOpLambda", "SlicingOpLambda")
