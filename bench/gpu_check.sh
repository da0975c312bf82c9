#!/usr/bin/env bash
# The GPU checks of the performance issue, prepared for a session that is lent a CUDA
# machine (the device tool; its image has JAX with CUDA, Flax, PyTorch; no Keras):
#   bash bench/gpu_check.sh        (repo root; results under $OUT, else bench/results)
# 1. real cuDNN against the XLA scan (tests/test_gpu_dispatch.py runs its GPU test there);
# 2. the typical LSTM and BiLSTM cases on the GPU: jrnn (cuDNN), jrnn's scan, Flax, PyTorch.
# Sized to fit a 15-minute device lease: ~32 worker processes.
set -uo pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
out="${OUT:-bench/results}"
python3 -c "import jax, flax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu_dispatch.py 2>&1 | tee "$out/gpu_tests.log"
python3 -m bench --device gpu --layers lstm,bilstm --shapes typical --modes forward,train \
  --dtypes float32 --impls jrnn,jrnn-scan,flax,torch --rounds 2 --iters 20 --out "$out/gpu"
