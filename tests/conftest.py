"""Test configuration: strict dtype promotion and quiet TensorFlow, before anything imports them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import shutil
import tempfile

import jax

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


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
