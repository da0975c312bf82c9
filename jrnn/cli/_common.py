"""What every ``jrnn`` subcommand shares: output modes, errors, model inputs."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jrnn._progress import Progress


class CLIError(Exception):
    """A user-facing error: printed as one line ``jrnn: error: <message>``, exit code 2."""


@dataclass
class UI:
    """Output policy of one run: ``--quiet`` and ``--json`` silence text and progress."""

    quiet: bool = False
    json: bool = False
    debug: bool = False
    _tty: Any = field(default=None, repr=False)

    def say(self, text: str = "") -> None:
        """Print human-readable text on stdout (not with --quiet or --json)."""
        if not (self.quiet or self.json):
            print(text, flush=True)

    def progress(self, total: int | None, label: str = "") -> Progress:
        """A progress bar on stderr (TTY only, not with --quiet or --json)."""
        if self._tty is None:
            # A duplicate of stderr: the bar stays visible while `native_quiet` hides
            # TensorFlow's C++ log lines on file descriptor 2.
            try:
                self._tty = os.fdopen(os.dup(sys.stderr.fileno()), "w")
            except (OSError, ValueError, AttributeError):
                self._tty = sys.stderr
        return Progress(total, label, enabled=not (self.quiet or self.json), stream=self._tty)

    @contextlib.contextmanager
    def native_quiet(self):
        """Hide what TensorFlow/Keras print on stderr (C++ logs, warnings) unless --debug."""
        if self.debug:
            yield
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):
                yield
                return
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                os.close(devnull)

    def emit(self, payload: dict) -> None:
        """The machine-readable result on stdout (with --json)."""
        if self.json:
            print(json.dumps(payload, default=_jsonable), flush=True)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def one_line(text: str) -> str:
    """Collapse a (possibly multi-line) message to one line."""
    return " ".join(str(text).split())


def positive(args: Any, *names: str) -> None:
    """Refuse an option of ``names`` (``--batch``...) below 1, naming it."""
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise CLIError(f"--{name}: expected a positive integer; received {getattr(args, name)}")


def existing_path(path: str) -> str:
    """``path`` if it exists, else a :class:`CLIError` naming it."""
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file or directory; check the path")
    return path


def layer_names(model) -> list[str]:
    """The model's top-level layer names in Keras' config order (operations recorded in a
    Functional graph, ``keras.ops`` calls or tf.keras ``TFOpLambda``s, are not layers)."""
    from importers._ops import KerasOp

    config = model.model_config
    entries = config.get("config", config).get("layers", [])
    names = [
        _name(e)
        for e in entries
        if e.get("class_name") != "InputLayer"
        and not isinstance(model.layers.get(_name(e)), KerasOp)
    ]
    return [n for n in names if n in model.layers] or list(model.layers.keys())


def load_model(path: str):
    """``importers.load(path)`` (never imports TensorFlow for files)."""
    import importers

    existing_path(path)
    return importers.load(path)


# -- inputs -------------------------------------------------------------------------------


@dataclass
class InputSpec:
    """One model input: its Keras name, shape (``None`` for unknown dims), dtype and, when
    an ``Embedding`` reads it, the vocabulary size random tokens are drawn below."""

    name: str
    shape: tuple
    dtype: str
    vocab: int | None = None


def input_specs(model) -> list[InputSpec]:
    """The inputs of an :class:`importers.ImportedModel`, from its Keras config."""
    config = model.model_config
    cfg = config.get("config", config)
    entries = cfg.get("layers", [])
    if config.get("class_name") == "Sequential" or "input_layers" not in cfg:
        first = next((e for e in entries if e["class_name"] != "InputLayer"), None)
        inp = next((e for e in entries if e["class_name"] == "InputLayer"), None)
        src = inp or first or {}
        shape = _batch_shape(src) or cfg.get("build_input_shape")
        dtype = _dtype(src)
        vocab = _vocab(first)
        return [InputSpec(_name(src) or "input", tuple(shape or (None, None)), dtype, vocab)]
    names = cfg["input_layers"]
    if isinstance(names, dict):  # keras.Model({"key": Input, ...}): in the config's key order
        names = list(names.values())
    names = [n[0] for n in (names if isinstance(names[0], list) else [names])]
    by_name = {_name(e): e for e in entries}
    specs = []
    for name in names:
        entry = by_name.get(name, {})
        readers = [
            e
            for e in entries
            if e["class_name"] == "Embedding"
            and f'"{name}"' in json.dumps(e.get("inbound_nodes", []))
        ]
        shape = _batch_shape(entry) or (None, None)
        specs.append(
            InputSpec(name, tuple(shape), _dtype(entry), _vocab(readers[0]) if readers else None)
        )
    return specs


def _name(entry: dict) -> str | None:
    return entry.get("name") or entry.get("config", {}).get("name")


def _batch_shape(entry: dict) -> list | None:
    cfg = entry.get("config", {})
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if isinstance(shape, dict):  # tf_keras' TensorShape serialisation
        shape = shape.get("dims") or shape.get("items")
    return list(shape) if shape else None


def _dtype(entry: dict) -> str:
    dtype = entry.get("config", {}).get("dtype") or "float32"
    if isinstance(dtype, dict):  # a DTypePolicy
        dtype = dtype.get("config", {}).get("name", "float32")
    return "float32" if dtype in ("mixed_float16", "mixed_bfloat16") else str(dtype)


def _vocab(entry: dict | None) -> int | None:
    if entry and entry.get("class_name") == "Embedding":
        return int(entry["config"]["input_dim"])
    return None


def random_inputs(
    model, *, batch: int = 4, time: int | None = None, seed: int = 0, default_time: int = 10
) -> list:
    """Seeded inputs for every model input: tokens in ``[0, vocab)`` (0 pads, so masks
    are exercised) for inputs an Embedding reads, else standard normal values; unknown
    dimensions take ``batch`` (first) and ``time`` (others; ``default_time`` when None).
    A ``time`` given for a model whose inputs fix their steps to another number raises
    CLIError rather than being ignored."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for spec in input_specs(model):
        tokens = spec.vocab is not None or np.issubdtype(np.dtype(spec.dtype), np.integer)
        sequence = len(spec.shape) > 2 or (len(spec.shape) == 2 and tokens)  # (B, T) ids too
        steps = spec.shape[1] if sequence else None
        if time is not None and steps is not None and int(steps) != time:
            raise CLIError(
                f"--time {time}: input {spec.name!r} has {int(steps)} steps fixed by the "
                "model; leave --time out"
            )
        filler = default_time if time is None else time
        dims = [batch] + [filler if d is None else int(d) for d in spec.shape[1:]]
        if spec.vocab is not None or np.issubdtype(np.dtype(spec.dtype), np.integer):
            high = spec.vocab or 2
            x = rng.integers(1, max(high, 2), size=dims)
            if x.ndim >= 2 and x.shape[1] > 2:  # pad the end of every other sequence
                x[::2, x.shape[1] - x.shape[1] // 3 :] = 0
            out.append(x.astype(spec.dtype))
        else:
            out.append(rng.standard_normal(dims).astype(spec.dtype))
    return out


def read_inputs(path: str, model) -> list:
    """Inputs from an ``.npz``: one array per model input, by the input's name, or the key
    ``inputs`` / ``x`` (one input), or the arrays in order (``arr_0``, ``arr_1``...)."""
    import numpy as np

    existing_path(path)
    specs = input_specs(model)
    names = [s.name for s in specs]
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a .npy: the one input
            arrays = {"inputs": loaded}
        else:
            with loaded as data:
                arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise CLIError(
            f"{path}: not a readable .npz of arrays ({one_line(err)}); write it with "
            "numpy.savez(path, inputs=x)"
        ) from err
    chosen = None
    if all(n in arrays for n in names):
        chosen = [arrays[n] for n in names]
    elif len(names) == 1 and ("inputs" in arrays or "x" in arrays):
        chosen = [arrays["inputs" if "inputs" in arrays else "x"]]
    elif set(arrays) == {f"arr_{k}" for k in range(len(names))}:  # numpy.savez(path, *xs)
        chosen = [arrays[f"arr_{k}"] for k in range(len(names))]
    if chosen is not None:
        for spec, x in zip(specs, chosen):  # the model's recorded sizes, not its name
            want = spec.shape[1:]
            if spec.shape == (None, None):  # no input shape recorded: nothing to check
                continue
            if len(x.shape) != len(spec.shape) or any(
                d is not None and d != n for d, n in zip(want, x.shape[1:])
            ):
                shown = ", ".join("?" if d is None else str(d) for d in want)
                raise CLIError(
                    f"--inputs {path}: input {spec.name!r} must have shape (batch, {shown}); "
                    f"received {tuple(x.shape)}"
                )
        return chosen
    raise CLIError(
        f"{path}: expected {len(names)} array(s) named {names} (or 'inputs' for one, or "
        f"arr_0... in the inputs' order); found "
        f"{sorted(arrays)}; save them with numpy.savez(path, {names[0]}=x, ...)"
    )


def call_arg(xs: list):
    """The model's call argument: the array for one input, the list for several."""
    return xs[0] if len(xs) == 1 else list(xs)


def flat_arrays(value: Any) -> list:
    """Every array in a (nested) output, as NumPy, in order."""
    import numpy as np

    if isinstance(value, dict):
        return [a for k in value for a in flat_arrays(value[k])]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in flat_arrays(v)]
    return [np.asarray(value)]


def stderr(text: str) -> None:
    """One line on stderr."""
    print(text, file=sys.stderr, flush=True)
