"""What every ``jrnn`` subcommand shares: output modes, errors, model inputs."""

from __future__ import annotations

import contextlib
import json
import os
import re
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


# ANSI escape sequences (Keras colours its exception messages) and other control characters.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")
# The longest error line printed: a library's message may hold whole arrays.
MAX_ERROR_CHARS = 600


def one_line(text: Any) -> str:
    """Collapse a (possibly multi-line) message to one line, without ANSI escapes."""
    return " ".join(_ANSI.sub("", str(text)).split())


def error_line(message: Any, limit: int = MAX_ERROR_CHARS) -> str:
    """The one ``jrnn: error: ...`` line of ``message``: one line, no escape codes, and
    cut (with ``...``) to ``limit`` characters, so that no library's repr of an array
    floods the terminal."""
    text = one_line(message)
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"jrnn: error: {text}"


def positive(args: Any, *names: str) -> None:
    """Refuse an option of ``names`` (``--batch``...) below 1, naming it."""
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise CLIError(f"--{name}: expected a positive integer; received {getattr(args, name)}")


def non_negative(args: Any, *names: str) -> None:
    """Refuse an option of ``names`` (``--seed``) below 0, naming it."""
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise CLIError(f"--{name}: expected an integer >= 0; received {getattr(args, name)}")


def output_dir(path: str, option: str) -> str:
    """``path`` if a directory can be written there (an existing directory, or a new one
    under an existing one), else a :class:`CLIError` naming ``option``. Checked before the
    work whose results go there; the directory itself is created only when written."""
    if not path:
        raise CLIError(f"{option}: expected a directory path; received an empty string")
    if os.path.lexists(path) and not os.path.exists(path):
        raise CLIError(
            f"{option} {path}: a broken symbolic link (to {os.readlink(path)!r}); "
            f"remove it or choose another {option}"
        )
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise CLIError(
                f"{option} {path}: not a directory (a file is there); pass a directory "
                "(created if missing)"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise CLIError(f"{option} {path}: permission denied; choose a writable directory")
        return path
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise CLIError(f"{option} {path}: {parent} is not a directory; choose another {option}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(
            f"{option} {path}: cannot create it, {parent} is not writable; choose another {option}"
        )
    return path


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
    """One model input: its Keras name, shape (``None`` for unknown dims; the batch first),
    dtype and, when an ``Embedding`` reads it, the vocabulary size random tokens are drawn
    below. ``recorded`` is False when the config holds no input shape (a Sequential built
    from data): ``shape`` is then the ``(None, None)`` placeholder and nothing to check."""

    name: str
    shape: tuple
    dtype: str
    vocab: int | None = None
    recorded: bool = True

    @property
    def tokens(self) -> bool:
        """Whether the input holds integer ids (an Embedding reads it, or an int dtype)."""
        import numpy as np

        return self.vocab is not None or np.issubdtype(np.dtype(self.dtype), np.integer)

    @property
    def steps(self) -> int | None:
        """The steps the model fixes on this (sequence) input, else None."""
        sequence = len(self.shape) > 2 or (len(self.shape) == 2 and self.tokens)
        return int(self.shape[1]) if sequence and self.shape[1] is not None else None

    @property
    def batch(self) -> int | None:
        """The batch size the model fixes (a stateful model's Input), else None."""
        return int(self.shape[0]) if self.shape and self.shape[0] is not None else None


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
        if shape and getattr(model, "keras_major", 3) >= 3:
            # Keras 3's Sequential records the batch of its first call, which fixes nothing
            # unless a layer is stateful (its steps stay: Keras' per-layer model checks them).
            if not re.search(r'"stateful": true', json.dumps(entries)):
                shape = [None, *list(shape)[1:]]
        return [
            InputSpec(
                _name(src) or "input", tuple(shape or (None, None)), dtype, vocab, bool(shape)
            )
        ]
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
        shape = _batch_shape(entry)
        vocab = _vocab(readers[0]) if readers else None
        specs.append(
            InputSpec(name, tuple(shape or (None, None)), _dtype(entry), vocab, bool(shape))
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


def check_sizes(model, *, batch: int | None = None, time: int | None = None) -> None:
    """Refuse a ``--batch`` or ``--time`` the model's inputs fix to another number (a
    stateful model's batch, a fixed-length input's steps): it would be ignored or fail
    inside Keras. Shared by every subcommand that makes random inputs."""
    for spec in input_specs(model):
        if batch is not None and spec.batch is not None and spec.batch != batch:
            raise CLIError(
                f"--batch {batch}: input {spec.name!r} has batch {spec.batch} fixed by the "
                "model (a stateful model); leave --batch out"
            )
        if time is not None and spec.steps is not None and spec.steps != time:
            raise CLIError(
                f"--time {time}: input {spec.name!r} has {spec.steps} steps fixed by the "
                "model; leave --time out"
            )


def random_inputs(
    model,
    *,
    batch: int | None = None,
    time: int | None = None,
    seed: int = 0,
    default_time: int = 10,
    default_batch: int = 4,
) -> list:
    """Seeded inputs for every model input: tokens in ``[0, vocab)`` (0 pads, so masks
    are exercised) for inputs an Embedding reads, else standard normal values. The batch
    is the one the model fixes (a stateful model), else ``batch`` (``default_batch`` when
    None); unknown steps take ``time`` (``default_time`` when None). A ``batch`` or
    ``time`` the model fixes to another number raises CLIError (:func:`check_sizes`)
    rather than being ignored."""
    import numpy as np

    check_sizes(model, batch=batch, time=time)
    specs = input_specs(model)
    fixed = next((s.batch for s in specs if s.batch is not None), None)
    rows = fixed or batch or default_batch
    rng = np.random.default_rng(seed)
    out = []
    for spec in specs:
        filler = default_time if time is None else time
        dims = [rows] + [filler if d is None else int(d) for d in spec.shape[1:]]
        if spec.tokens:
            high = spec.vocab or 2
            x = rng.integers(1, max(high, 2), size=dims)
            if x.ndim >= 2 and x.shape[1] > 2:  # pad the end of every other sequence
                x[::2, x.shape[1] - x.shape[1] // 3 :] = 0
            out.append(x.astype(spec.dtype))
        else:
            out.append(rng.standard_normal(dims).astype(spec.dtype))
    return out


def model_inputs(args: Any, model, *, default_time: int) -> list:
    """The inputs of a run: ``--inputs`` read and checked, or seeded random ones sized by
    ``--batch``/``--time``/``--seed``. Those three only shape random inputs: given with
    ``--inputs`` (whose arrays fix batch and steps) they are refused, not ignored."""
    if args.inputs:
        given = [f"--{n}" for n in ("batch", "time", "seed") if getattr(args, n) is not None]
        if given:
            raise CLIError(
                f"{given[0]}: sets the random inputs, which --inputs {args.inputs} replaces; "
                f"leave {given[0]} out (the arrays fix batch and steps)"
            )
        return read_inputs(args.inputs, model)
    return random_inputs(
        model, batch=args.batch, time=args.time, seed=args.seed or 0, default_time=default_time
    )


_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


def _load_arrays(path: str) -> dict:
    """``{key: array}`` of an ``.npz`` (``{"inputs": array}`` for an ``.npy``), refusing
    anything else with a message that says what the file is not."""
    import numpy as np

    label = f"--inputs {path}"
    if os.path.isdir(path):
        raise CLIError(f"{label}: a directory; pass a .npz or .npy file")
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as err:
        raise CLIError(f"{label}: cannot read it ({err.strerror or one_line(err)})") from err
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_NPY_MAGIC)):
        raise CLIError(
            f"{label}: not a .npz or .npy file (it starts with {head!r}); write the "
            "inputs with numpy.savez(path, inputs=x)"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a .npy: the one input
            return {"inputs": loaded}
        with loaded as data:
            return {k: data[k] for k in data.files}
    except ValueError as err:
        if "pickled" in str(err):
            raise CLIError(
                f"{label}: holds Python objects (pickled), which jrnn does not load; save "
                "numeric arrays with numpy.savez(path, inputs=x)"
            ) from err
        raise CLIError(
            f"{label}: not a readable .npz/.npy of arrays ({one_line(err)[:150]}); write it "
            "with numpy.savez(path, inputs=x)"
        ) from err
    except (OSError, EOFError, KeyError) as err:
        raise CLIError(
            f"{label}: a damaged .npz/.npy ({type(err).__name__}: {one_line(err)[:150]}); "
            "write it again with numpy.savez(path, inputs=x)"
        ) from err


def check_input(spec: InputSpec, x, label: str) -> Any:
    """``x`` if it fits ``spec`` (rank, recorded sizes, fixed batch, dtype, token ids in
    ``[0, vocab)``), else a :class:`CLIError` naming ``label``, the input, what was
    expected and what came. Integer ids stored as whole floats are taken as integers;
    other floats are never cast to ids."""
    import numpy as np

    x = np.asarray(x)
    where = f"{label}: input {spec.name!r}"
    if spec.recorded:
        want = spec.shape[1:]
        shown = ", ".join("?" if d is None else str(d) for d in want)
        if x.ndim != len(spec.shape) or any(
            d is not None and d != n for d, n in zip(want, x.shape[1:])
        ):
            rank = f" (rank {x.ndim}, expected {len(spec.shape)})" * (x.ndim != len(spec.shape))
            raise CLIError(
                f"{where} must have shape (batch, {shown}); received {tuple(x.shape)}{rank}"
            )
        if spec.batch is not None and x.shape[0] != spec.batch:
            raise CLIError(
                f"{where} must have batch {spec.batch}, fixed by the model (a stateful "
                f"model); received {tuple(x.shape)}"
            )
    kind = x.dtype.kind
    if kind not in "biuf":
        raise CLIError(f"{where} must hold numbers ({spec.dtype}); received dtype {x.dtype}")
    if spec.tokens:
        if kind == "f":
            if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
                bad = x[~(np.isfinite(x) & (x == np.round(x)))].flat[0]
                raise CLIError(
                    f"{where} takes integer token ids ({spec.dtype}); received {x.dtype} "
                    f"values such as {float(bad):g} that are not whole numbers (floats are never "
                    "cast to ids); save integer ids"
                )
        if spec.vocab is not None and x.size and (x.min() < 0 or x.max() >= spec.vocab):
            bad = x.max() if x.max() >= spec.vocab else x.min()
            raise CLIError(
                f"{where}: token ids must be in [0, {spec.vocab}) (the Embedding's input_dim); "
                f"received {int(bad)}"
            )
        return x.astype(spec.dtype) if kind == "f" else x
    return x


def read_inputs(path: str, model) -> list:
    """Inputs from an ``.npz``: one array per model input, by the input's name, or the key
    ``inputs`` / ``x`` (one input), or the arrays in order (``arr_0``, ``arr_1``...).
    Each array is checked against its input (:func:`check_input`) before any model runs."""
    if not os.path.exists(path):
        raise CLIError(f"--inputs {path}: no such file or directory; check the path")
    specs = input_specs(model)
    names = [s.name for s in specs]
    arrays = _load_arrays(path)
    chosen = None
    if all(n in arrays for n in names):
        chosen = [arrays[n] for n in names]
    elif len(names) == 1 and ("inputs" in arrays or "x" in arrays):
        chosen = [arrays["inputs" if "inputs" in arrays else "x"]]
    elif set(arrays) == {f"arr_{k}" for k in range(len(names))}:  # numpy.savez(path, *xs)
        chosen = [arrays[f"arr_{k}"] for k in range(len(names))]
    if chosen is not None:
        return [check_input(spec, x, f"--inputs {path}") for spec, x in zip(specs, chosen)]
    raise CLIError(
        f"--inputs {path}: expected {len(names)} array(s) named {names} (or 'inputs' for "
        f"one, or arr_0... in the inputs' order); found {sorted(arrays)}; save them with "
        f"numpy.savez(path, {names[0]}=x, ...)"
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
