"""jrnn benchmarks against Keras 3 (JAX and TensorFlow backends), PyTorch and Flax.

``python -m bench --help``. Each implementation runs in its own subprocess
(:mod:`bench.worker`); implementations alternate within a round so that ratios survive
machine noise. Results: ``bench/results/latest.md`` (Markdown table) and
``bench/results/latest.png`` (bar chart), plus the raw JSON.
"""
