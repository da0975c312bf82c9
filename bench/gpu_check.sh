#!/usr/bin/env bash
# The GPU checks of the performance issue, prepared for a session that is lent a CUDA
# machine (the device tool; its image has JAX with CUDA, Flax, PyTorch; no Keras):
#   bash bench/gpu_check.sh        (repo root; results under $OUT, else bench/results)
# Keras 3 for the keras-jax column travels as wheels in .whl/ when present (keras, namex,
# optree for the device's Python; see /work/.library/device/README.md).
# 1. real cuDNN against the XLA scan (tests/test_gpu_dispatch.py runs its GPU test there);
# 2. bench/gpu_probe.py: every GPU path of jrnn's LSTM, BiLSTM and GRU in one process;
# 3. the typical LSTM and BiLSTM cases against the peers: jrnn (its default on GPU, the
#    unrolled scan; jrnn-scan is the same path there), Keras-JAX, Flax, PyTorch (cuDNN).
#    Each stage has its own time limit (~8 minutes in all). GPU_CHECK_STAGES (default
#    "tests probe bench") runs a subset.
set -uo pipefail
out="${OUT:-bench/results}"
stages=" ${GPU_CHECK_STAGES:-tests probe bench} "
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import jax, flax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__)"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
SECONDS=0
# A newer JAX there may warn where the pinned one does not: report, don't fail, on that.
if [[ $stages == *" tests "* ]]; then
  timeout 80 python3 -m pytest -q -p no:cacheprovider -W default::DeprecationWarning \
    -W default::FutureWarning tests/test_gpu_dispatch.py 2>&1 | tee -a "$out/gpu_log.txt"
  echo "tests: ${SECONDS}s"
fi
if [[ $stages == *" probe "* ]]; then
  timeout 200 python3 -m bench.gpu_probe --iters 20 --out "$out/probe.jsonl" 2>&1 \
    | tee -a "$out/gpu_log.txt"
  echo "probe: ${SECONDS}s"
fi
if [[ $stages == *" bench "* ]]; then
  timeout 160 python3 -m bench --device gpu --layers lstm,bilstm --shapes typical \
    --modes forward,train --dtypes float32 --impls jrnn,jrnn-scan,keras-jax,flax,torch \
    --rounds 1 --iters 20 --out "$out/gpu" 2>&1 | tee -a "$out/gpu_log.txt"
  echo "bench: ${SECONDS}s"
fi
