"""The ``jrnn`` command line, driven as users drive it: ``python -m jrnn ...`` in a subprocess.

Fixtures: the bundled example (``jrnn/data/example.keras``, a Keras 3 Embedding(mask_zero)
-> Bidirectional(LSTM) -> GRU -> Dense model) and a legacy ``.h5`` Keras 3 model with a
float input of unknown length (LSTM -> GRU -> Dense), built here once per
module. ``convert``, ``inspect`` and ``demo`` run with TensorFlow, Keras and tf_keras
imports blocked: they must never need them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "jrnn" / "data" / "example.keras"
REFERENCE = ROOT / "jrnn" / "data" / "example_reference.npz"

# Run `jrnn` with TensorFlow/Keras imports raising ImportError.
BLOCKED = """
import runpy, sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"blocked by the test: {name}")
        return None
sys.meta_path.insert(0, _Block())
"""


def jrnn_cli(*args, block_keras: bool = False, timeout: int = 240):
    """``python -m jrnn *args`` -> CompletedProcess (text)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    if block_keras:
        code = (
            BLOCKED
            + "sys.argv = ['jrnn', *sys.argv[1:]]\nrunpy.run_module('jrnn', run_name='__main__')\n"
        )
        cmd = [sys.executable, "-c", code, *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "jrnn", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def assert_one_line_error(proc, *fragments: str):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("jrnn: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def h5_model(tmp_path_factory):
    """A legacy .h5 Keras 3 model, inputs, Keras' outputs on them (and the folder)."""
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((None, 3), name="signal")
    h = keras.layers.LSTM(5, return_sequences=True, name="lstm")(inp)
    h = keras.layers.GRU(4, name="gru")(h)
    out = keras.layers.Dense(2, name="dense")(h)
    model = keras.Model(inp, out, name="fixture")
    # asymmetric, non-zero biases (the initialisers' zeros would hide gate mix-ups)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "fixture.h5"
    model.save(path)
    x = rng.standard_normal((3, 7, 3)).astype("float32")
    expected = np.asarray(model(x))
    np.savez(folder / "inputs.npz", signal=x)
    return {"path": path, "x": x, "expected": expected, "dir": folder}


# -- demo ---------------------------------------------------------------------------------


def test_demo_runs_the_bundled_example_without_tensorflow():
    proc = jrnn_cli("demo", "--repeat", "3", block_keras=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "max |jrnn - Keras|" in out and "TensorFlow imported: no" in out
    assert "reloaded with jrnn.load" in out
    assert out.strip().splitlines()[-1].startswith("OK")


def test_bundled_example_is_small_and_matches_its_reference():
    import importers

    assert EXAMPLE.stat().st_size < 400_000
    ref = np.load(REFERENCE)
    model = importers.load(EXAMPLE)
    assert [type(model.layers[n]).__name__ for n in ("embedding", "bilstm", "gru", "dense")] == [
        "Embedding",
        "Bidirectional",
        "GRU",
        "Dense",
    ]
    assert (ref["inputs"] == 0).any(), "the reference inputs must exercise the mask"
    np.testing.assert_allclose(np.asarray(model(ref["inputs"])), ref["outputs"], atol=1e-5)


# -- convert ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["h5", "keras"])
def test_convert_then_load_without_tensorflow(h5_model, tmp_path, source):
    if source == "h5":
        path, x, expected = h5_model["path"], h5_model["x"], h5_model["expected"]
    else:
        ref = np.load(REFERENCE)
        path, x, expected = EXAMPLE, ref["inputs"], ref["outputs"]
    out = tmp_path / "checkpoint"
    proc = jrnn_cli("convert", path, "-o", out, "--json", block_keras=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verified"] is True and Path(report["output"]) == out
    np.savez(tmp_path / "io.npz", x=x, expected=expected)
    check = (
        BLOCKED
        + f"""
import numpy as np, jrnn
data = np.load({str(tmp_path / "io.npz")!r})
model = jrnn.load({str(out)!r})
np.testing.assert_allclose(np.asarray(model(data["x"])), data["expected"], atol=1e-5)
assert not any(m.split(".")[0] in ("tensorflow", "keras", "tf_keras") for m in sys.modules)
print("loaded")
"""
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, timeout=240
    )
    assert loaded.returncode == 0 and "loaded" in loaded.stdout, loaded.stderr
    if source == "h5":  # converting again over it needs --overwrite
        again = jrnn_cli("convert", path, "-o", out, block_keras=True)
        assert_one_line_error(again, str(out), "--overwrite")
        # --overwrite replaced the whole directory (rmtree): the user's other files in it,
        # the model itself with `-o .`, went with it. Only the checkpoint's files change.
        (out / "notes.txt").write_text("mine")
        again = jrnn_cli("convert", path, "-o", out, "--overwrite", block_keras=True)
        assert again.returncode == 0, again.stderr
        assert (out / "notes.txt").read_text() == "mine"
        assert sorted(p.name for p in out.iterdir()) == sorted(
            ["notes.txt", "jrnn_checkpoint.json", "weights.safetensors"]
        )


# -- check --------------------------------------------------------------------------------


def test_check_passes_within_atol_and_fails_beyond(h5_model):
    ok = jrnn_cli("check", h5_model["path"], "--inputs", h5_model["dir"] / "inputs.npz", "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] is True and report["input_shapes"] == [[3, 7, 3]]
    assert report["atol"] == 1e-5  # the default for a float32 model
    assert [row["layer"] for row in report["layers"]] == ["lstm", "gru", "dense", "(outputs)"]
    assert all(row["max_abs_error"] <= 1e-5 for row in report["layers"])

    np.save(h5_model["dir"] / "one.npy", np.load(h5_model["dir"] / "inputs.npz")["signal"])
    npy = jrnn_cli("check", h5_model["path"], "--inputs", h5_model["dir"] / "one.npy")
    assert npy.returncode == 0, npy.stderr  # a .npy is the one input
    np.savez(h5_model["dir"] / "wide.npz", inputs=np.zeros((2, 7, 5), np.float32))
    wide = jrnn_cli("check", h5_model["path"], "--inputs", h5_model["dir"] / "wide.npz")
    assert_one_line_error(wide, "input 'signal' must have shape (batch, ?, 3); received (2, 7, 5)")

    strict = jrnn_cli("check", EXAMPLE, "--atol", "1e-12", "--batch", "2", "--seed", "3")
    assert strict.returncode == 1, strict.stderr
    assert "(2, 20)" in strict.stdout and "random, seed 3" in strict.stdout
    assert "FAIL" in strict.stdout and "bilstm" in strict.stdout
    assert strict.stdout.strip().splitlines()[-1].startswith("FAILED")


def test_check_default_atol_follows_the_compute_dtype():
    """A correct mixed_bfloat16 conversion (errors ~4e-3) failed every layer against the
    float32 default of 1e-5: the default is the suite's tolerance of the narrowest compute
    dtype among the model's layers."""
    from flax import nnx

    import jrnn
    from jrnn.cli.check import _default_atol

    def model(*layers):
        return nnx.List(list(layers))

    rngs = nnx.Rngs(0)
    assert _default_atol(model(jrnn.LSTM(3, 2, rngs=rngs), jrnn.Dense(1, 3, rngs=rngs))) == 1e-5
    mixed = jrnn.LSTM(3, 2, dtype="mixed_bfloat16", rngs=rngs)
    assert _default_atol(model(mixed, jrnn.Dense(1, 3, rngs=rngs))) == 6e-2
    half = jrnn.GRU(3, 2, dtype="mixed_float16", rngs=rngs)
    assert _default_atol(model(jrnn.Bidirectional(half, rngs=rngs))) == 1e-2


def test_check_without_keras_says_so():
    proc = jrnn_cli("check", EXAMPLE, block_keras=True)
    assert_one_line_error(proc, str(EXAMPLE), "not installed", "jrnn[keras]")


# -- inspect ------------------------------------------------------------------------------


def test_inspect_prints_summary_and_writes_pngs(h5_model, tmp_path):
    plots = tmp_path / "plots"
    proc = jrnn_cli("inspect", h5_model["path"], "--plots", plots, "--time", "6", block_keras=True)
    assert proc.returncode == 0, proc.stderr
    assert "LSTM" in proc.stdout and "GRU" in proc.stdout and "INPUT/FORGET" in proc.stdout
    names = sorted(p.name for p in plots.iterdir())
    for layer in ("lstm", "gru"):
        for kind in ("rnn_histogram", "rnn_heatmap", "gate_heatmap"):
            assert f"{layer}_{kind}.png" in names
    assert "gradient_flow.png" in names
    for png in plots.iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_inspect_json_one_layer():
    proc = jrnn_cli("inspect", EXAMPLE, "--layer", "gru", "--json", block_keras=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["recurrent_layers"] == ["gru"]
    assert report["layers"] == ["embedding", "bilstm", "gru", "dense"]
    assert "UPDATE/RESET/NEW" in report["summary"]


# -- errors -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    import keras

    folder = tmp_path_factory.mktemp("bad")
    (folder / "garbage.keras").write_bytes(b"not a keras file at all")
    data = EXAMPLE.read_bytes()
    (folder / "truncated.keras").write_bytes(data[: len(data) // 2])
    inp = keras.Input((4, 3))
    out = keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(keras.layers.LSTM(2)(inp))
    keras.Model(inp, out).save(folder / "lambda.keras")
    return folder


@pytest.mark.parametrize(
    "command,name,fragments",
    [
        (["inspect"], "missing.keras", ["missing.keras", "no such file"]),
        (["convert", "-o", "OUT"], "garbage.keras", ["garbage.keras", "neither a zip"]),
        (["check"], "truncated.keras", ["truncated.keras"]),
        (
            ["inspect", "--json"],
            "lambda.keras",
            ["lambda.keras", "'doubler'", "Lambda", "importers.load(path, custom_layers="],
        ),
        (["check", "--time", "3"], "../example", ["--time 3", "20 steps fixed by the model"]),
    ],
)
def test_bad_inputs_give_one_line_and_status_2(bad_files, tmp_path, command, name, fragments):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    path = EXAMPLE if name == "../example" else bad_files / name
    proc = jrnn_cli(*args[:1], path, *args[1:])
    assert_one_line_error(proc, *fragments)
    if "--json" in command:
        assert "error" in json.loads(proc.stdout)


def test_debug_shows_the_traceback(bad_files):
    proc = jrnn_cli("inspect", bad_files / "garbage.keras", "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr  # 1 would read as check's


def test_a_closed_stdout_ends_quietly():
    """`jrnn inspect m.keras --json | head -c 10`: the reader leaves early."""
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write breaks the pipe
    proc = subprocess.run(
        [sys.executable, "-m", "jrnn", "inspect", str(EXAMPLE), "--json"],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore"),
        cwd=ROOT,
    )
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def test_inputs_in_the_inputs_order_as_numpy_savez_names_them(tmp_path):
    tokens = np.random.default_rng(0).integers(1, 12, (2, 20)).astype(np.int32)
    np.savez(tmp_path / "positional.npz", tokens)  # arr_0
    np.savez(tmp_path / "other.npz", words=tokens)  # neither the input's name nor arr_0
    proc = jrnn_cli("check", EXAMPLE, "--inputs", tmp_path / "positional.npz")
    assert proc.returncode == 0, proc.stderr
    assert_one_line_error(
        jrnn_cli("check", EXAMPLE, "--inputs", tmp_path / "other.npz"), "arr_0", "['words']"
    )


# -- bench --------------------------------------------------------------------------------


def test_bench_times_jrnn_and_reports_json():
    proc = jrnn_cli(
        "bench",
        "--impls",
        "jrnn",
        "--batch",
        "2",
        "--time",
        "5",
        "--units",
        "4",
        "--features",
        "3",
        "--iters",
        "2",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (row,) = report["results"]
    assert row["impl"] == "jrnn" and row["ms"] > 0
    assert report["shape"] == {"batch": 2, "time": 5, "features": 3, "units": 4}


def test_bench_runner_passes_the_malloc_setting_to_workers_and_notes_it(monkeypatch):
    import subprocess

    import bench.__main__ as bench_main
    from bench.__main__ import MALLOC_RETAIN, markdown, run_worker

    seen = {}

    def fake_run(cmd, **kw):
        seen.update(kw["env"], cmd=cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout='{"median_ms": 1.0}\n', stderr="")

    monkeypatch.setattr(bench_main.subprocess, "run", fake_run)
    result = run_worker("jrnn", "lstm", (2, 5, 3, 4), "forward", "float32", 2, [], MALLOC_RETAIN)
    assert result["median_ms"] == 1.0
    assert all(seen[k] == v for k, v in MALLOC_RETAIN.items())
    # CPU cases hide any GPU from the workers.
    assert seen["JAX_PLATFORMS"] == "cpu" and seen["CUDA_VISIBLE_DEVICES"] == ""
    assert seen["cmd"][seen["cmd"].index("--device") + 1] == "cpu"
    machine = "GEMM roofline: 100.0 GFLOP/s (NumPy float32), 2 cores."
    table = markdown([], machine, ["jrnn"], note="under --malloc retain")
    assert table.splitlines()[0] == machine + " under --malloc retain"


def test_bench_worker_refuses_to_time_a_gpu_case_on_the_cpu():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.worker",
            "--impl",
            "jrnn",
            "--device",
            "gpu",
            "--batch",
            "2",
            "--time",
            "3",
            "--features",
            "3",
            "--units",
            "4",
            "--iters",
            "2",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "impl": "jrnn",
        "unsupported": "JAX runs on cpu here, not gpu",
    }


def test_bench_tile_microbenchmark_builds_and_reports_every_variant(tmp_path):
    # bench/tile_microbench.cc backs docs/performance.md's Intel AVX-512 numbers; it must keep
    # building. It needs a C++ compiler, and AVX-512 to run (else it says so and exits 1).
    import shutil

    cxx = next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
    if cxx is None:
        pytest.skip("no C++ compiler on PATH")
    exe = tmp_path / "tile"
    source = ROOT / "bench" / "tile_microbench.cc"
    subprocess.run([cxx, "-O2", "-std=c++17", str(source), "-o", str(exe)], check=True)
    usage = subprocess.run([str(exe)], capture_output=True, text=True)
    assert usage.returncode in (1, 2)
    if usage.returncode == 1:
        assert "needs AVX-512" in usage.stderr
        return
    assert "usage:" in usage.stderr
    for args, names in (
        (
            ["tile", "16", "1", "16", "1", "8"],
            ["no prefetch", "prefetch 8", "prefetch 16", "K blocks"],
        ),
        (["row", "16", "2"], ["4 chains", "8 chains"]),
    ):
        run = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert [line.startswith(name) for line, name in zip(lines, names)] == [True] * len(names)
        assert all(float(line.split("median ")[1].split()[0]) > 0 for line in lines)


def test_bench_fma_peak_measures_the_cpu_and_the_probe_reports_a_table(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fma_peak", "--no-kernels", "--seconds", "0.02"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[:2] == ["FMA", "peak"] and words[2] in ("(avx512):", "(avx2):")
    assert float(words[3]) > 0 and float(words[8]) > 0  # 1 thread, every core
    # The GPU probe's Markdown table from its JSON lines (no GPU needed to read them).
    rows = [
        {"shape": "typical", "layer": "lstm", "path": "cudnn", "mode": "train", "ms": 4.0},
        {
            "shape": "typical",
            "layer": "lstm",
            "path": "scan-unroll16",
            "mode": "train",
            "ms": 2.0,
            "first_call_s": 3.5,
        },
    ]
    probe = tmp_path / "probe.jsonl"
    probe.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu_probe", "--report", str(probe)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.splitlines()[2]
    assert line == "| typical | lstm | train | 4.00 | - | - | - | 2.00 | 2.00x | -/-/3.5 |"


def test_usage_errors_are_one_line():
    proc = jrnn_cli("check", "model.keras", "--atol", "tight")
    assert_one_line_error(proc, "--atol", "jrnn check --help")


@pytest.mark.parametrize(
    "args",
    [
        ("check", "m.keras", "--batch", "0"),
        ("check", "m.keras", "--time", "-1"),
        ("check", "m.keras", "--atol", "-1"),
        ("inspect", "m.keras", "--batch", "0"),
    ],
)
def test_sizes_are_checked_before_the_model_runs(args):
    """`--batch 0` reached Keras and came back as an "internal error" in its colours."""
    proc = jrnn_cli(*args)
    assert_one_line_error(proc, f"{args[2]}: expected a")


# -- progress helper (in process) ---------------------------------------------------------


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_only_on_a_tty_and_only_when_enabled():
    from jrnn._progress import Progress

    tty = _FakeTTY()
    with Progress(2, stream=tty, delay=0.0, interval=10) as bar:
        bar.step("load")
        bar.step("run")
    assert "[############............] 1/2 run" in tty.getvalue()
    assert tty.getvalue().endswith("\r\033[K") and bar.done == 2
    for stream, enabled in ((io.StringIO(), None), (_FakeTTY(), False)):
        with Progress(2, stream=stream, delay=0.0, enabled=enabled) as bar:
            bar.step("load")
        assert stream.getvalue() == ""


def test_bench_remat_reports_both_losses(capsys):
    from bench import remat

    assert remat.main(["--batch", "2", "--time", "16", "--features", "3", "--units", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "loss over every output" in lines[0] and "loss over the last output" in lines[1]
    assert all("MiB ->" in line and "ms ->" in line for line in lines)


@pytest.mark.short_call_rule
def test_bench_short_calls_scores_the_rules(capsys, tmp_path):
    from bench import short_calls

    out = tmp_path / "points.json"
    argv = ["--cells", "SimpleRNN", "--dtypes", "float32", "--modes", "forward"]
    argv += ["--units", "4", "--batches", "1", "--times", "1,32", "--out", str(out)]
    assert short_calls.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("float32 forward SimpleRNN units    4 batch  1, scan/kernel: 1:")
    assert [line.split(":")[0] for line in lines[1:]] == [
        "kernel always", "scan always", "native=None (SHORT_CALL_ROWS)"
    ]  # fmt: skip
    points = json.loads(out.read_text())
    assert [(p["batch"], p["time"]) for p in points] == [(1, 1), (1, 32)]
    # The rule: the scan for one step, the kernel from 2 steps and 32 rows (float32).
    assert [short_calls.rule_kernel(p) for p in points] == [False, True]
    fake = [
        dict(points[0], kernel_ms=2.0, scan_ms=1.0),
        dict(points[1], kernel_ms=1.0, scan_ms=4.0),
    ]
    assert short_calls.score(fake, short_calls.rule_kernel) == (1.0, 1.0, 1.0)
    assert short_calls.score(fake, lambda p: True) == pytest.approx((2**0.5, 2.0, 1.5))


def test_random_inputs_for_dict_and_mixed_input_models():
    """`--time` sets the steps of the sequence inputs only (a flat `(B, 8)` input keeps its
    8 features); a model of a dict of inputs lists them in the config's key order."""
    import keras

    import importers
    from jrnn.cli._common import input_specs, random_inputs

    seq, aux = keras.Input((None, 4), name="seq"), keras.Input((8,), name="aux")
    merged = keras.layers.Concatenate()([keras.layers.LSTM(3)(seq), aux])
    model = importers.load(keras.Model({"s": seq, "a": aux}, merged))
    assert [s.name for s in input_specs(model)] == ["seq", "aux"]
    xs = random_inputs(model, batch=2, time=30)
    assert [x.shape for x in xs] == [(2, 30, 4), (2, 8)]
    assert np.asarray(model(xs)).shape == (2, 11)


# -- audit fixes: errors name the argument at fault, nothing is ignored (mostly in process) --


def _cli(capsys, *args) -> tuple[int, str, str]:
    """``jrnn *args`` in this process -> (status, stdout, stderr); argparse's exits too."""
    from jrnn.cli import main

    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def _one_line(status, err, *fragments):
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("jrnn: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_error_lines_are_capped_and_free_of_escape_codes():
    """Keras' exception text (ANSI bold, the whole input array twice) came out as a 3 KB
    "one line"."""
    from jrnn.cli._common import MAX_ERROR_CHARS, error_line

    line = error_line("m.keras: \x1b[1mInvalid input shape\x1b[0m\n" + "[[0 0 0]]\n" * 1000)
    assert line.startswith("jrnn: error: m.keras: Invalid input shape [[0 0 0]]")
    assert "\x1b" not in line and "\n" not in line and line.endswith("...")
    assert len(line) <= len("jrnn: error: ") + MAX_ERROR_CHARS


def test_inputs_are_checked_for_rank_dtype_ids_and_file_kind(tmp_path):
    """Float inputs were cast to token ids (all zeros), a wrong rank reached Keras, id 300
    of a 100-word vocabulary was an "internal error", a text file was "pickled"."""
    import importers
    from jrnn.cli._common import CLIError, input_specs, read_inputs

    model = importers.load(EXAMPLE)  # (batch, 20) int tokens read by an Embedding
    (spec,) = input_specs(model)
    ids = np.random.default_rng(0).integers(0, spec.vocab, (2, 20))
    cases = {
        "rank.npz": (np.zeros((3, 20, 5), np.float32), ["(batch, 20)", "(3, 20, 5)", "rank 3"]),
        "float.npz": (ids + 0.5, ["integer token ids", "float64", "0.5", "never cast"]),
        "oob.npz": (np.where(ids == ids.max(), 300, ids), [f"[0, {spec.vocab})", "300"]),
        "text.npz": (np.full((2, 20), "a"), ["must hold numbers", "<U1"]),
    }
    for name, (x, fragments) in cases.items():
        np.savez(tmp_path / name, inputs=x)
        with pytest.raises(CLIError) as err:
            read_inputs(str(tmp_path / name), model)
        for fragment in [f"--inputs {tmp_path / name}", f"input {spec.name!r}", *fragments]:
            assert fragment in str(err.value), str(err.value)
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(CLIError, match=r"notes.txt: not a .npz or .npy file") as err:
        read_inputs(str(tmp_path / "notes.txt"), model)
    assert "pickled" not in str(err.value)
    np.savez(tmp_path / "whole.npz", inputs=ids.astype(np.float32))  # whole floats: ids
    (x,) = read_inputs(str(tmp_path / "whole.npz"), model)
    assert x.dtype == np.int32 and (x == ids).all()


def test_errors_blame_the_inputs_or_memory_not_a_bug():
    from argparse import Namespace

    from jrnn.cli import _message

    class InvalidArgumentError(Exception):  # TensorFlow's, as the message classifier sees it
        pass

    args = Namespace(model="m.keras", inputs="ids.npz", batch=None)
    for err in (IndexError("index 300 is out of bounds"), InvalidArgumentError("indices[0,2]")):
        text = _message(err, args)
        assert text.startswith("--inputs ids.npz: the model refuses these inputs"), text
        assert "internal error" not in text and "report" not in text
    for err in (MemoryError(), RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating")):
        text = _message(err, args)
        assert "out of memory" in text and "reduce --batch/--time" in text, text
    assert "internal error" in _message(RuntimeError("a bug"), args)


def test_output_paths_are_checked_first_and_name_their_option(tmp_path, monkeypatch):
    """`-o ""` blamed the model; `--plots FILE` said "File exists" after the whole summary;
    a symlinked OUT got Python's "Cannot call rmtree on a symbolic link"."""
    from jrnn.cli._common import CLIError, output_dir
    from jrnn.cli.convert import _check_output

    (tmp_path / "notes.txt").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "broken")
    for path, fragments in (
        ("", ["--plots: expected a directory path; received an empty string"]),
        (tmp_path / "notes.txt", ["notes.txt: not a directory"]),
        (tmp_path / "notes.txt" / "sub", ["notes.txt is not a directory"]),
        (tmp_path / "broken", ["broken: a broken symbolic link"]),
    ):
        with pytest.raises(CLIError) as err:
            output_dir(str(path), "--plots")
        assert all(f in str(err.value) for f in fragments), str(err.value)
    assert output_dir(str(tmp_path / "new" / "dir"), "--plots")  # created when written
    # A link to a checkpoint stands for it; to an empty directory too.
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "empty_link")
    _check_output(str(tmp_path / "empty_link"), overwrite=False)
    (real / "jrnn_checkpoint.json").write_text("{}")
    _check_output(str(tmp_path / "empty_link"), overwrite=True)
    with pytest.raises(CLIError, match=r"^-o .*empty_link \(a link to .*real\): a jrnn check"):
        _check_output(str(tmp_path / "empty_link"), overwrite=False)
    with pytest.raises(CLIError, match=r"^-o: expected a directory path"):
        _check_output("", overwrite=True)


def test_usage_errors_name_the_option_at_fault(capsys, tmp_path):
    """`jrnn --frobnicate` said a command was missing, `--version` did not exist, `--seed -1`
    blamed the model (check) or passed (inspect), `inspect --plots ""`, `--inputs` without
    `--plots` and `bench --impls ""` were ignored."""
    import jrnn

    status, out, _ = _cli(capsys, "--version")
    assert status == 0 and out.strip() == f"jrnn {jrnn.__version__}"
    status, _, err = _cli(capsys, "--frobnicate")
    _one_line(status, err, "unrecognized option --frobnicate")
    status, _, err = _cli(capsys)
    _one_line(status, err, "expected a command: one of convert, check, inspect, bench, demo")
    for command in ("check", "inspect"):
        _one_line(*_cli(capsys, command, EXAMPLE, "--seed", "-1")[::2], "--seed: expected an")
    _one_line(*_cli(capsys, "convert", EXAMPLE, "-o", "")[::2], "-o: expected a directory")
    (tmp_path / "notes.txt").write_text("x")
    status, out, err = _cli(capsys, "inspect", EXAMPLE, "--plots", tmp_path / "notes.txt")
    _one_line(status, err, "--plots", "notes.txt: not a directory")
    assert out == ""  # refused before the summary, not after it
    _one_line(*_cli(capsys, "inspect", EXAMPLE, "--plots", "")[::2], "--plots: expected")
    np.savez(tmp_path / "x.npz", inputs=np.ones((2, 20), np.int32))
    status, out, err = _cli(capsys, "inspect", EXAMPLE, "--inputs", tmp_path / "x.npz")
    _one_line(status, err, "--inputs: chooses the inputs of the --plots figures")
    for extra in (["--time", "5"], ["--time", "5", "--plots", tmp_path / "p"]):
        status, _, err = _cli(capsys, "inspect", EXAMPLE, *extra)  # as check refuses it
        _one_line(status, err, "--time 5: input", "20 steps fixed by the model")
    status, _, err = _cli(capsys, "check", EXAMPLE, "--inputs", tmp_path / "x.npz", "--seed", "1")
    _one_line(status, err, "--seed: sets the random inputs, which --inputs")
    for impls in ("", "jrnn,"):
        status, _, err = _cli(capsys, "bench", "--impls", impls)
        _one_line(status, err, "--impls:")


def test_help_states_checkpoints_and_every_bench_default(capsys):
    status, out, _ = _cli(capsys, "convert", "--help")
    assert status == 0 and "or a jrnn checkpoint directory" in " ".join(out.split())
    status, out, _ = _cli(capsys, "bench", "--help")
    text = " ".join(out.split())
    for option, default in (
        ("--layer", "lstm"),
        ("--batch", "16"),
        ("--time", "50"),
        ("--features", "32"),
        ("--units", "64"),
        ("--mode", "forward"),
        ("--dtype", "float32"),
        ("--rounds", "1"),
        ("--iters", "10"),
    ):
        after = text.split(f"{option} ", 2)[-1]  # the option's entry in the list
        assert f"(default {default})" in after.split(" --")[0], (option, after[:120])


def test_ctrl_c_anywhere_in_main_is_one_line_and_130(capsys, monkeypatch):
    import jrnn.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(jrnn.cli, "_parser", interrupted)
    assert _cli(capsys, "inspect", EXAMPLE)[::2] == (130, "jrnn: interrupted\n")


def test_bench_roofline_is_measured_between_runs_and_flags_results_above_it(capsys, monkeypatch):
    """The GEMM "roofline" was one NumPy measurement; jrnn bench printed 150% of it."""
    import itertools

    from bench.__main__ import cpu_gemm_reference
    from jrnn.cli import bench as cli_bench

    reference = cpu_gemm_reference(sizes=(64,), repeats=1)
    assert reference["gflops"] > 0 and reference["gemm"].endswith("64x64")
    measured = itertools.cycle([40.0, 50.0])

    class Runner:
        def cpu_gemm_reference(self):
            return {"gflops": next(measured), "gemm": "XLA:CPU 1024x1024"}

        def run_worker(self, impl, *args):
            return {"median_ms": 1.0, "first_call_s": 0.1}

        def case_flops(self, layer, shape, mode):
            return 60e6 if layer == "lstm" else 1e6  # 60 GFLOP/s: above the reference

    monkeypatch.setattr(cli_bench, "find_runner", Runner)
    status, out, _ = _cli(capsys, "bench", "--impls", "jrnn")
    assert status == 0
    assert "GEMM reference 50 GFLOP/s (best of 2 measurements, XLA:CPU 1024x1024)" in out
    assert "120.0% (!)" in out and "faster than the measured GEMM reference" in out
    status, out, _ = _cli(capsys, "bench", "--impls", "jrnn", "--layer", "gru", "--json")
    report = json.loads(out)
    assert report["results"][0]["above_reference"] is False


STATEFUL_CHECK = """
import sys
from jrnn.cli import main
path = sys.argv[1]
if path.endswith(".h5"):
    import tf_keras as K
    L = K.layers
    K.Sequential([
        L.LSTM(5, stateful=True, return_sequences=True, batch_input_shape=(3, 6, 4), name="l"),
        L.GRU(4, stateful=True, name="g"), L.Dense(2, name="d")]).save(path)
print("status", main(["check", path, "-q"]), main(["check", path, "-q", "--batch", "5"]))
"""


@pytest.mark.parametrize("keras_major", [3, 2])
def test_check_passes_on_stateful_models_at_their_fixed_batch(tmp_path, keras_major):
    """The per-layer sub-model's run advanced the stateful layers' states before the
    whole-model run (a false FAIL); a stateful Input's batch 3 met the default --batch 4."""
    if keras_major == 3:
        import keras

        inp = keras.Input(batch_shape=(3, 6, 4), name="x")
        h = keras.layers.LSTM(5, stateful=True, return_sequences=True, name="l")(inp)
        h = keras.layers.GRU(4, stateful=True, name="g")(h)
        keras.Model(inp, keras.layers.Dense(2, name="d")(h)).save(tmp_path / "s.keras")
    path = tmp_path / ("s.keras" if keras_major == 3 else "s.h5")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", STATEFUL_CHECK, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert "status 0 2" in proc.stdout, proc.stdout + proc.stderr
    assert "--batch 5: input" in proc.stderr and "batch 3 fixed by the model" in proc.stderr
