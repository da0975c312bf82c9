"""Hostile and broken files through the public entry points ``importers.load_weights`` and
``importers.load``: each class gets its documented exception, nothing is half-loaded, and
memory stays bounded. Reader-level cases live in tests/test_files.py; these start from
small valid files written here by Keras 3.15.1 and tf_keras 2.21, then damage them.

The fuzz test (:func:`test_fuzz_mutated_files`) mutates those files (byte flips,
truncations, insertions; the ``.keras`` archive as is, where CRCs catch most damage, and
with only its ``model.weights.h5`` mutated and the archive rebuilt) and asserts that
``read_keras_file`` and ``load_weights`` either succeed completely or raise a
``KerasFileError`` subclass, within a deadline. It runs ``JRNN_FUZZ_EXAMPLES`` examples
(default 150, well under 40 s with ``-n 2``). A longer profile by hand::

    JRNN_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest -q -p no:randomly \
        tests/test_hostile_files.py -k fuzz --hypothesis-show-statistics \
        --hypothesis-seed=$RANDOM
"""

from __future__ import annotations

import io
import json
import os
import signal
import tempfile
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tf_keras
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import importers
import jrnn
from importers._files import read_keras_file
from importers.errors import (
    CorruptFileError,
    ExtraWeightsError,
    KerasFileError,
    MissingWeightsError,
    UnsafeFileError,
    UnsupportedLayerError,
    WeightShapeError,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
T, F, U = 5, 3, 4


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "HDF5 is legacy" notices, zip duplicate names
        return fn(*args, **kwargs)


def _model(lib):
    inp = lib.Input((T, F))
    x = lib.layers.LSTM(U, return_sequences=True, name="lstm")(inp)
    x = lib.layers.Dense(2, name="dense")(x)
    model = lib.Model(inp, x)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.standard_normal(w.shape).astype("f4") for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    k3, k2 = _model(keras), _model(tf_keras)
    out = {"keras": d / "m.keras", "weights_h5": d / "m.weights.h5", "h5": d / "m.h5"}
    _quiet(k3.save, out["keras"])
    _quiet(k3.save_weights, out["weights_h5"])
    _quiet(k3.save, out["h5"])
    out["tf_h5"] = d / "tf.h5"
    _quiet(k2.save, out["tf_h5"])
    return out


def _target():
    rngs = nnx.Rngs(0)
    return {
        "lstm": jrnn.LSTM(U, F, return_sequences=True, rngs=rngs),
        "dense": nnx.Linear(U, 2, rngs=rngs),
    }


def _snapshot(target):
    return [np.asarray(p[...]).copy() for m in target.values() for p in importers.keras_params(m)]


def _both(path, error, match, *, load=True, **limits):
    """``load_weights`` (and ``load``) raise ``error``; the target is left untouched."""
    target = _target()
    before = _snapshot(target)
    with pytest.raises(error, match=match):
        importers.load_weights(target, path, **limits)
    for a, b in zip(before, _snapshot(target)):
        np.testing.assert_array_equal(a, b)
    if load:
        with pytest.raises(error, match=match):
            importers.load(path)


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def _repack(path, members, compression=zipfile.ZIP_STORED):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def _edit_archive_weights(src, dst, edit):
    """A copy of the .keras ``src`` whose model.weights.h5 went through ``edit(h5file)``."""
    members = dict(_members(src))
    h5 = dst.with_suffix(".inner.h5")
    h5.write_bytes(members["model.weights.h5"])
    with h5py.File(h5, "r+") as f:
        edit(f)
    members["model.weights.h5"] = h5.read_bytes()
    return _repack(dst, list(members.items()))


def _edit_h5(src, dst, edit):
    dst.write_bytes(Path(src).read_bytes())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _with_config(src, dst, config):
    members = dict(_members(src))
    members["config.json"] = config if isinstance(config, bytes) else json.dumps(config)
    return _repack(dst, list(members.items()))


# -- the valid files load -------------------------------------------------------------------


@pytest.mark.parametrize("key", ["keras", "weights_h5", "h5", "tf_h5"])
def test_valid_files_load_completely(files, key):
    target = _target()
    assert importers.load_weights(target, files[key]) == ["lstm", "dense"]
    if key != "weights_h5":
        model = importers.load(files[key])
        assert set(model.layers.keys()) == {"lstm", "dense"}
        for name, module in target.items():
            for a, b in zip(
                importers.keras_params(module), importers.keras_params(model.layers[name])
            ):
                np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]))


# -- truncated and corrupted ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["keras", "h5", "tf_h5"])
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated(files, tmp_path, key, cut):
    data = files[key].read_bytes()
    path = tmp_path / files[key].name
    path.write_bytes(data[: int(len(data) * cut)])
    _both(path, CorruptFileError, r"truncated|damaged|neither")


def test_corrupted_archive_member_fails_crc(files, tmp_path):
    data = bytearray(files["keras"].read_bytes())
    with zipfile.ZipFile(files["keras"]) as zf:
        info = zf.getinfo("model.weights.h5")
    assert info.compress_type == zipfile.ZIP_STORED
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0xFF  # inside the weights, the CRC must catch it
    path = tmp_path / "flip.keras"
    path.write_bytes(bytes(data))
    _both(path, CorruptFileError, r"model\.weights\.h5: cannot decompress.*CRC")


def test_corrupted_hdf5_superblock(files, tmp_path):
    data = bytearray(files["h5"].read_bytes())
    data[8:40] = b"\xff" * 32
    path = tmp_path / "flip.h5"
    path.write_bytes(bytes(data))
    _both(path, CorruptFileError, r"flip\.h5: /: cannot open the HDF5 file")


# -- zip bombs and traversal ----------------------------------------------------------------


def test_zip_member_declaring_huge_size(files, tmp_path):
    """A member whose central directory declares 10 GB (zip64) is refused before reading."""
    members = _members(files["keras"])
    path = tmp_path / "huge.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
        next(i for i in zf.filelist if i.filename == "model.weights.h5").file_size = 10**10
    _both(path, UnsafeFileError, r"model\.weights\.h5: the member declares 10000000000 bytes")


def test_zip_bomb_lying_about_its_size_stays_bounded(files, tmp_path):
    """50 MB of zeros deflated to 50 kB, declaring 1000 bytes: zipfile stops at the
    declared size, so the lie surfaces as a CRC error after reading 1000 bytes."""
    members = dict(_members(files["keras"]))
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", members["config.json"])
        zf.writestr("model.weights.h5", bytes(50_000_000))
        next(i for i in zf.filelist if i.filename == "model.weights.h5").file_size = 1000
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        _both(path, CorruptFileError, r"model\.weights\.h5: cannot decompress.*Bad CRC-32")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def test_zip_bomb_under_the_limits_is_refused_by_its_ratio(files, tmp_path):
    """A config.json of 100 MB of spaces deflated to ~100 kB, declaring its true size:
    within the default limits, but no Keras archive inflates 100 times (Keras stores its
    members), so it is refused before the whole member is held."""
    members = dict(_members(files["keras"]))
    members["config.json"] = members["config.json"] + b" " * 100_000_000
    path = _repack(tmp_path / "bomb.keras", list(members.items()), zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 500_000
    _both(path, UnsafeFileError, r"config\.json: the member inflates from \d+ to more than")


def test_weights_nothing_in_the_config_owns_are_refused(files, tmp_path):
    """Keras refuses a legacy file listing a layer its config lacks ("Layer count
    mismatch") and a model's own top-level weights ("expected 0 variables")."""

    def ghost(f):
        g = f["model_weights"]
        names = [n if isinstance(n, bytes) else n.encode() for n in g.attrs["layer_names"]]
        g.attrs["layer_names"] = [*names, b"ghost"]
        layer = g.create_group("ghost")
        layer.attrs["weight_names"] = [b"ghost/kernel:0"]
        layer["ghost/kernel:0"] = np.ones((2, 2), "f4")

    path = _edit_h5(files["tf_h5"], tmp_path / "ghost.h5", ghost)
    with pytest.raises(ExtraWeightsError, match=r"weights of layers \['ghost'\] that the model"):
        importers.load(path)

    def top(f):
        f.require_group("vars")["0"] = np.ones(3, "f4")

    path = _edit_archive_weights(files["keras"], tmp_path / "top.keras", top)
    with pytest.raises(ExtraWeightsError, match=r"1 weights of the model itself"):
        importers.load(path)


def test_zip_bomb_over_the_caller_limits(files, tmp_path):
    members = dict(_members(files["keras"]))
    members["model.weights.h5"] = members["model.weights.h5"] + bytes(5_000_000)
    path = _repack(tmp_path / "big.keras", list(members.items()), zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    _both(path, UnsafeFileError, r"max_member_bytes", load=False, max_member_bytes=1_000_000)
    _both(path, UnsafeFileError, r"max_total_bytes", load=False, max_total_bytes=1_000_000)


@pytest.mark.parametrize(
    "name, match",
    [("../../etc/passwd", r"'\.\.' segment"), ("/tmp/evil", "an absolute path")],
)
def test_member_paths_escaping(files, tmp_path, name, match):
    path = _repack(tmp_path / "escape.keras", [*_members(files["keras"]), (name, b"x")])
    _both(path, UnsafeFileError, match)
    assert not Path(name).exists() or name == "../../etc/passwd"


# -- JSON --------------------------------------------------------------------------------


def _layers_config(layers):
    return {"class_name": "Functional", "config": {"name": "m", "layers": layers}}


@pytest.mark.parametrize(
    "config, error, match",
    [
        ({"class_name": 5, "config": {}}, CorruptFileError, "expected a model config"),
        (_layers_config("abc"), CorruptFileError, "'layers' must be a list"),
        (_layers_config([5]), CorruptFileError, r"layer 0: expected a layer config"),
        (
            _layers_config([{"class_name": "LSTM", "config": {"name": ["x"]}}]),
            CorruptFileError,
            "expected a layer config",
        ),
        (b"[" * 100_000 + b"]" * 100_000, UnsafeFileError, "nested 100000 levels deep"),
        (b'{"class_name": "Functional", "config": {"a": 1e99999', CorruptFileError, "JSON"),
    ],
    ids=["class-name-int", "layers-str", "layer-int", "name-list", "deep", "truncated"],
)
def test_config_json_wrong_types_or_nested(files, tmp_path, config, error, match):
    path = _with_config(files["keras"], tmp_path / "cfg.keras", config)
    _both(path, error, match)


def test_h5_model_config_wrong_types(files, tmp_path):
    def edit(f):
        f.attrs["model_config"] = json.dumps(_layers_config([{"class_name": 3}]))

    _both(_edit_h5(files["h5"], tmp_path / "cfg.h5", edit), CorruptFileError, "layer config")


# -- datasets -----------------------------------------------------------------------------


def _replace_kernel(make):
    def edit(f):
        group = f["layers/lstm/cell/vars"]
        del group["0"]
        make(group, "0")

    return edit


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda g, k: g.create_dataset(k, shape=(10**9, 10**6), chunks=True, dtype="f4"),
            r"declares shape \(1000000000, 1000000\)",
        ),
        (
            lambda g, k: g.create_dataset(k, shape=(3000, 100_000), chunks=True, dtype="f4"),
            r"stores only \d+ bytes",
        ),
        (lambda g, k: g.create_dataset(k, data=np.ones((F, 4 * U), "c8")), "complex64"),
        (lambda g, k: g.create_dataset(k, data=["a"], dtype=h5py.string_dtype()), "non-numeric"),
        (lambda g, k: g.create_dataset(k, (F,), dtype=h5py.vlen_dtype("f4")), "variable-length"),
    ],
    ids=["shape-bomb", "storage-bomb", "complex", "string", "vlen"],
)
def test_absurd_or_non_numeric_datasets(files, tmp_path, make, match):
    tracemalloc.start()
    try:
        path = _edit_archive_weights(files["keras"], tmp_path / "d.keras", _replace_kernel(make))
        _both(path, UnsafeFileError, match)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000


def test_wrong_shape_dataset_in_legacy_file(files, tmp_path):
    def edit(f):
        g = f["model_weights/lstm/lstm/lstm_cell"]
        del g["kernel:0"]
        g["kernel:0"] = np.ones((F + 1, 4 * U), "f4")

    path = _edit_h5(files["tf_h5"], tmp_path / "shape.h5", edit)
    target = _target()
    before = _snapshot(target)
    with pytest.raises(
        WeightShapeError,
        match=r"layer 'lstm', weight 'lstm/lstm_cell/kernel:0 \(weight 0\)': "
        r"expected shape \(3, 16\), received \(4, 16\)",
    ):
        importers.load_weights(target, path)
    for a, b in zip(before, _snapshot(target)):
        np.testing.assert_array_equal(a, b)


# -- code in files --------------------------------------------------------------------------


def _lambda_model(lib, sentinel):
    def double(x):
        with open(sentinel, "w"):  # proof of execution, should the importer ever run it
            pass
        return x * 2.0

    inp = lib.Input((T, F))
    x = lib.layers.LSTM(U, return_sequences=True, name="lstm")(inp)
    x = lib.layers.Lambda(double, name="twice")(x)
    return lib.Model(inp, lib.layers.Dense(2, name="dense")(x))


@pytest.mark.parametrize("fmt", ["keras3.keras", "keras3.h5", "tf_keras.h5"])
def test_lambda_layer_is_refused_never_run(tmp_path, fmt):
    sentinel = tmp_path / "ran"
    lib = tf_keras if fmt.startswith("tf_keras") else keras
    model = _lambda_model(lib, str(sentinel))
    path = tmp_path / f"lam.{fmt.split('.')[-1]}"
    _quiet(model.save, path)
    sentinel.unlink()
    raw = path.read_bytes()
    with pytest.raises(UnsupportedLayerError, match=r"layer 'twice' of class 'Lambda'.*never exec"):
        importers.load(path)
    assert importers.load_weights(_target(), path) == ["lstm", "dense"]  # no code needed
    assert not sentinel.exists()
    assert path.read_bytes() == raw


def test_pickled_npz_weights(files, tmp_path):
    buf = io.BytesIO()
    np.savez(buf, **{"layers/lstm": np.array({"0": np.ones(2)}, dtype=object)})
    members = [(n, d) for n, d in _members(files["keras"]) if n != "model.weights.h5"]
    path = _repack(tmp_path / "npz.keras", [*members, ("model.weights.npz", buf.getvalue())])
    _both(path, UnsafeFileError, r"model\.weights\.npz: .*pickle")


# -- missing, extra and duplicate ------------------------------------------------------------


def test_missing_layer_group(files, tmp_path):
    def edit(f):
        del f["layers/dense"]

    path = _edit_archive_weights(files["keras"], tmp_path / "m.keras", edit)
    _both(path, MissingWeightsError, r"config lists layer 'dense' \(Dense\)")
    path = _edit_h5(files["weights_h5"], tmp_path / "m.weights.h5", edit)
    _both(path, MissingWeightsError, r"no layer named 'dense' in the file", load=False)


def test_missing_legacy_dataset(files, tmp_path):
    def edit(f):
        del f["model_weights/dense/dense/bias:0"]

    path = _edit_h5(files["tf_h5"], tmp_path / "m.h5", edit)
    _both(path, MissingWeightsError, r"lists weight 'dense/bias:0'.*no dataset")


def test_fewer_and_extra_weights_for_the_target(files):
    target = _target()
    target["dense"] = nnx.Linear(U, 2, use_bias=False, rngs=nnx.Rngs(0))
    before = _snapshot(target)
    with pytest.raises(ExtraWeightsError, match=r"layer 'dense' holds 2 weights.*has only 1"):
        importers.load_weights(target, files["keras"])
    for a, b in zip(before, _snapshot(target)):  # the lstm before it was not assigned
        np.testing.assert_array_equal(a, b)
    bare = {"lstm": jrnn.LSTM(U, F, use_bias=False, rngs=nnx.Rngs(0))}
    with pytest.raises(ExtraWeightsError, match=r"refusing to drop \['lstm/lstm_cell/bias:0'\]"):
        importers.load_weights(bare, files["tf_h5"])
    wrong = {"dense": jrnn.LSTM(2, U, rngs=nnx.Rngs(0))}
    with pytest.raises(MissingWeightsError, match=r"holds 2 weights.*needs 3"):
        importers.load_weights(wrong, files["h5"])
    assert importers.load_weights({**bare, **wrong}, files["h5"], strict=False) == []
    assert importers.load_weights({**wrong, **_target()}, files["h5"], strict=False) == [
        "dense",
        "lstm",
    ]


def test_extra_vars_dataset(files, tmp_path):
    def edit(f):
        f["layers/lstm/cell/vars"]["3"] = np.ones(4, "f4")

    path = _edit_archive_weights(files["keras"], tmp_path / "x.keras", edit)
    _both(path, ExtraWeightsError, r"layer 'lstm' holds 4 weights", load=False)
    with pytest.raises(KerasFileError):
        importers.load(path)


def test_duplicate_layer_names(files, tmp_path):
    config = json.loads(dict(_members(files["keras"]))["config.json"])
    layers = config["config"]["layers"]
    layers[-1]["config"]["name"] = "lstm"
    layers[-1]["name"] = "lstm"
    path = _with_config(files["keras"], tmp_path / "dup.keras", config)
    _both(path, CorruptFileError, "two layers are named 'lstm'")

    def edit(f):
        f["model_weights"].attrs["layer_names"] = [b"lstm", b"lstm"]

    path = _edit_h5(files["tf_h5"], tmp_path / "dup.h5", edit)
    _both(path, CorruptFileError, "lists 'lstm' twice")

    def same_vars_name(f):
        f["layers/dense/vars"].attrs["name"] = "lstm"

    path = _edit_h5(files["weights_h5"], tmp_path / "dup.weights.h5", same_vars_name)
    _both(path, CorruptFileError, "two groups hold weights of a layer named 'lstm'", load=False)


# -- fuzz ---------------------------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("JRNN_FUZZ_EXAMPLES", "150"))
FUZZ_KINDS = ("keras", "keras_inner", "weights_h5", "h5", "tf_h5")
_LIMIT = 20_000_000  # bytes: a mutated shape may declare anything; keep memory small


class _Seeds(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "<seed files>"


@pytest.fixture(scope="module")
def seeds(files):
    out = _Seeds({key: files[key].read_bytes() for key in ("keras", "weights_h5", "h5", "tf_h5")})
    out["keras_inner"] = dict(_members(files["keras"]))["model.weights.h5"]
    return out


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("set"), st.floats(0, 1), st.sampled_from([0, 0xFF, 0x7F, 0x80])),
)


def _mutate(data: bytes, mutations) -> bytes:
    out = bytearray(data)
    for op, where, arg in mutations:
        if not out:
            break
        at = min(int(where * len(out)), len(out) - 1)
        if op == "flip":
            out[at] ^= arg
        elif op == "cut":
            del out[at:]
        elif op == "insert":
            out[at:at] = arg
        else:
            out[at] = arg
    return bytes(out)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang("no result within 10 s")


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=5000,
    derandomize=os.environ.get("JRNN_FUZZ_EXAMPLES") is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kind=st.sampled_from(FUZZ_KINDS), mutations=st.lists(_mutation, min_size=1, max_size=4))
def test_fuzz_mutated_files(seeds, kind, mutations):
    data = _mutate(seeds[kind], mutations)
    suffix = ".h5" if "h5" in kind else ".keras"
    if kind == "keras_inner":  # valid zip, damaged weights inside
        members = [(n, d) for n, d in _members_bytes(seeds["keras"]) if n != "model.weights.h5"]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, member in [*members, ("model.weights.h5", data)]:
                zf.writestr(name, member)
        data = buf.getvalue()
    fd, path = tempfile.mkstemp(suffix=suffix)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        limits = {"max_member_bytes": _LIMIT, "max_total_bytes": 2 * _LIMIT}
        try:
            kf = read_keras_file(path, **limits)
        except KerasFileError:
            pass
        else:
            for lw in kf.layer_weights.values():
                assert len(lw.arrays) == len(lw.weight_names)
                assert all(isinstance(a, np.ndarray) for a in lw.arrays)
        target = _target()
        before = _snapshot(target)
        try:
            loaded = importers.load_weights(target, path, **limits)
        except KerasFileError:
            for a, b in zip(before, _snapshot(target)):
                np.testing.assert_array_equal(a, b)
        else:
            assert loaded == ["lstm", "dense"]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.unlink(path)


def _members_bytes(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]
