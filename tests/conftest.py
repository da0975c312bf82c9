"""Test configuration: strict dtype promotion and quiet TensorFlow, before anything imports them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
