"""Test configuration: strict dtype promotion, quiet TensorFlow and fast XLA compiles,
before anything imports them."""

import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# XLA compiles the suite's programs without LLVM's optimisations: compiling is most of the
# suite's time (thousands of small programs); 17:21 -> 12:29 for the suite (2026-12-06).
# The HLO passes, fusions and buffer assignment (what the tests check, in-place aliasing
# included) are XLA's usual ones; only the machine code is slower. JRNN_TEST_XLA_OPT=1
# keeps XLA's default; benchmarks and users never see this.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
if os.environ.get("JRNN_TEST_XLA_OPT") != "1" and _FAST_COMPILE not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

import jax  # noqa: E402 (after XLA_FLAGS)

jax.config.update("jax_numpy_dtype_promotion", "strict")

# One JAX compilation cache for the whole test run, shared by pytest-xdist's workers: many
# tests compile the same program (the same layer at the same shapes) in separate tests and
# processes. The first process to load this file (xdist's controller, before it starts the
# workers, which inherit its environment) makes a fresh directory and removes it at the end;
# JRNN_TEST_JAX_CACHE_DIR set beforehand names a directory to keep (reruns then start
# warm), JRNN_TEST_JAX_CACHE=0 turns the cache off. Every program is cached, however fast it
# compiled.
_OWN_CACHE = None
if os.environ.get("JRNN_TEST_JAX_CACHE", "1") != "0":
    if "JRNN_TEST_JAX_CACHE_DIR" not in os.environ:
        _OWN_CACHE = tempfile.mkdtemp(prefix="jrnn-test-jax-cache-")
        os.environ["JRNN_TEST_JAX_CACHE_DIR"] = _OWN_CACHE
    jax.config.update("jax_compilation_cache_dir", os.environ["JRNN_TEST_JAX_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


import pytest  # noqa: E402

import jrnn.rnn  # noqa: E402 (after XLA_FLAGS)


@pytest.fixture(autouse=True)
def _kernels_on_short_calls(request, monkeypatch):
    """The suite runs the native kernels on every call they can run, short ones included
    (its shapes are small: the Keras parity tests' batch 3 × time 7 is 21 rows): they are
    the riskier path, and the scan is covered by ``native=False`` and the layers without a
    kernel. Tests marked ``short_call_rule`` see the library's rule (test_native.py)."""
    if request.node.get_closest_marker("short_call_rule") is None:
        monkeypatch.setattr(jrnn.rnn, "SHORT_CALL_ROWS", dict.fromkeys(jrnn.rnn.SHORT_CALL_ROWS, 0))
        monkeypatch.setattr(jrnn.rnn, "SHORT_CALL_STEPS", 1)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
