"""Rebuild a whole Keras model (Sequential or Functional config) as a jrnn ``nnx.Module``.

Entry point: :func:`load`. So far the source is a live ``keras.Model`` (Keras 3 or tf_keras;
Keras is imported only when such an object is given) or a file read by
``importers._files.read_keras_file`` when that reader exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from flax import nnx

from importers.convert import CONVERTERS
from importers.errors import UnsupportedLayerError
from jrnn._config import _freeze, _thaw


def _refs(node: Any) -> tuple[list[tuple[str, int, int]], bool]:
    """Inbound tensors of one node, Keras 2 or Keras 3 format; bool: list-valued call."""
    if isinstance(node, dict):  # Keras 3
        args = node.get("args", [])
        first = args[0] if args else None
        is_list = isinstance(first, list)
        items = first if is_list else [first]
        return [tuple(t["config"]["keras_history"]) for t in items], is_list
    refs = [(r[0], r[1], r[2]) for r in node]  # Keras 2: [["name", node, tensor, kwargs], ...]
    return refs, len(refs) > 1


def _in_features(arrays: list) -> tuple[int, ...]:
    return (arrays[0].shape[0],) if arrays else ()


class ImportedModel(nnx.Module):
    """A Keras model rebuilt in jrnn; call as the Keras model; ``layers[name]`` by Keras name."""

    def __init__(
        self,
        config: dict,
        weights: Callable[[str], list],
        custom_layers: dict,
        keras_major: int = 3,
    ):
        if keras_major < 3:
            config = _keras2_activations(config)
        cfg = config.get("config", config)
        self.name = cfg.get("name")
        # The Keras model config this model was rebuilt from (hashable, read-only): what
        # `importers.save_keras` and checkpoints write back. `model_config` thaws it.
        self._keras_config = _freeze(config)
        self.keras_major = keras_major
        layers: dict[str, Any] = {}
        self._plan: list = []
        if config.get("class_name") == "Sequential" or "input_layers" not in cfg:
            prev = None
            for lc in cfg["layers"]:
                if lc["class_name"] == "InputLayer":
                    continue
                name = lc["config"]["name"]
                layers[name] = self._convert(lc, weights, custom_layers)
                self._plan.append((name, [(prev, 0, 0)] if prev else [("__input__", 0, 0)], False))
                prev = name
            self._inputs = [("__input__", 0, 0)]
            self._outputs = [(prev, 0, 0)]
        else:
            for lc in cfg["layers"]:
                name = lc["config"]["name"]
                if lc["class_name"] == "InputLayer":
                    continue
                layers[name] = self._convert(lc, weights, custom_layers)
                for node in lc.get("inbound_nodes", []):
                    refs, is_list = _refs(node)
                    self._plan.append((name, refs, is_list))
            norm = lambda r: [tuple(x) for x in (r if isinstance(r[0], list) else [r])]
            self._inputs = [(n, 0, 0) for n, _, _ in norm(cfg["input_layers"])]
            self._outputs = norm(cfg["output_layers"])
            self._single_output = not isinstance(cfg["output_layers"][0], list)
        self.layers = nnx.Dict(layers)

    @staticmethod
    def _convert(lc: dict, weights, custom_layers):
        cls, name = lc["class_name"], lc["config"]["name"]
        arrays = weights(name)
        if cls in custom_layers:
            return custom_layers[cls](lc["config"], arrays)
        if cls not in CONVERTERS:
            raise UnsupportedLayerError(
                cls,
                name,
                detail=f"jrnn cannot convert it exactly; pass custom_layers={{{cls!r}: "
                "factory}} to supply a jrnn module for it.",
            )
        return CONVERTERS[cls](lc["config"], arrays, _in_features(arrays))

    @property
    def model_config(self) -> dict:
        """The Keras model config (``{"class_name", "config"}``) the model was rebuilt from."""
        return _thaw(self._keras_config)

    def get_layer(self, name: str) -> nnx.Module:
        return self.layers[name]

    def __call__(self, inputs: Any, *, training: bool = False) -> Any:
        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        tensors: dict = {}
        for (n, _, _), x in zip(self._inputs, xs, strict=True):
            tensors[(n, 0, 0)] = (jnp.asarray(x), None)
        node_count: dict[str, int] = {}
        for name, refs, is_list in self._plan:
            idx = node_count.get(name, 0)
            node_count[name] = idx + 1
            args = [tensors[r] for r in refs]
            vals = [a[0] for a in args]
            masks = [a[1] for a in args]
            layer = self.layers[name]
            x = vals if is_list else vals[0]
            if not is_list:
                mask = masks[0]
            elif hasattr(layer, "compute_mask") or _takes_mask(layer):
                mask = masks
            else:
                mask = _merge_masks(masks, vals)
            out = _apply(layer, x, mask, training)
            outs = list(out[0]) if isinstance(out[0], (list, tuple)) else [out[0]]
            for t, o in enumerate(outs):
                tensors[(name, idx, t)] = (o, out[1] if t == 0 else None)
        results = [tensors[r][0] for r in self._outputs]
        return (
            results[0] if len(results) == 1 and getattr(self, "_single_output", True) else results
        )


def _keras2_activations(obj: Any) -> Any:
    """Keras 1/2 ``hard_sigmoid`` is ``clip(0.2x + 0.5)``: rename to jrnn's Keras 2 variant."""
    if isinstance(obj, dict):
        return {
            k: ("keras2_hard_sigmoid" if v == "hard_sigmoid" else _keras2_activations(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_keras2_activations(v) for v in obj]
    return obj


def _merge_masks(masks, vals):
    if all(m is None for m in masks):
        return None
    full = [m if m is not None else jnp.ones(v.shape[:2], bool) for m, v in zip(masks, vals)]
    out = full[0]
    for m in full[1:]:
        out = out & m
    return out


def _apply(layer, x, mask, training):
    """Call one converted layer and return ``(outputs, output mask)``.

    The contract for converted modules: ``__call__(x, *, training=False)`` plus ``mask=``
    when the layer consumes the Keras mask (its signature has a ``mask`` parameter; for
    list inputs the mask is the list of input masks). The output mask is
    ``layer.compute_mask(x, mask)`` when the module defines it (Keras 3.15's rule for that
    class), otherwise the input mask passes through unchanged.
    """
    import jrnn

    if isinstance(layer, (jrnn.RNN, jrnn.Bidirectional)):
        y = layer(x, mask=mask, training=training)
        return y, (mask if layer.return_sequences else None)
    kwargs = {"training": training}
    if _takes_mask(layer):
        kwargs["mask"] = mask
    y = layer(x, **kwargs)
    if hasattr(layer, "compute_mask"):
        return y, layer.compute_mask(x, mask)
    return y, mask


def _takes_mask(layer) -> bool:
    import inspect

    try:
        return "mask" in inspect.signature(layer.__call__).parameters
    except (TypeError, ValueError):
        return False


def load(source: Any, *, custom_layers: dict | None = None) -> ImportedModel:
    """Rebuild ``source`` (a live Keras model, or a path when the file reader exists) in jrnn."""
    custom_layers = custom_layers or {}
    if hasattr(source, "get_config") and hasattr(source, "get_layer"):
        config = {"class_name": type(source).__name__, "config": source.get_config()}
        major = 2 if type(source).__module__.startswith(("tf_keras", "keras.src.engine")) else 3
        return ImportedModel(
            config, lambda n: list(source.get_layer(n).get_weights()), custom_layers, major
        )
    try:
        from importers._files import read_keras_file
    except ImportError:
        return _load_legacy_h5(str(source), custom_layers)
    kf = read_keras_file(source)
    return ImportedModel(
        kf.model_config,
        lambda n: list(kf.layer_weights[n].arrays) if n in kf.layer_weights else [],
        custom_layers,
    )


def _load_legacy_h5(path: str, custom_layers: dict) -> ImportedModel:
    """Legacy ``.h5`` (tf_keras or Keras 3 ``save(..., .h5)``): JSON config + weight groups."""
    import json

    from importers.weights import _legacy_arrays, _open

    with _open(path) as root:
        raw = root.attrs.get("model_config")
        if raw is None:
            raise ValueError(f"{path}: no model_config attribute (a weights-only file?).")
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        version = root.attrs.get("keras_version", b"3")
        version = version.decode() if isinstance(version, bytes) else str(version)
        cache: dict[str, list] = {}

        def weights(name: str) -> list:
            if name not in cache:
                cache[name] = _legacy_arrays(root, name, path) or []
            return cache[name]

        return ImportedModel(config, weights, custom_layers, int(version.split(".")[0]))
