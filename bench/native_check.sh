#!/usr/bin/env bash
# The native CPU kernels on a machine this checkout was not installed on (the device
# tool's GPU host, whose CPU has AVX-512): builds jrnn/native/_kernels*.so in place, all
# sources in parallel (setup.py's flags), runs the kernels' tests on the CPU backend with
# the build this CPU picks (AVX-512 where it has it; one test also runs the AVX2 build and
# compares the two bit for bit), and reports the CPU's FMA peak against the GEMM rate of
# each build's kernels.
#   bash bench/native_check.sh      (repo root; results under $OUT, else bench/results)
# Each stage has its own time limit (~5 minutes in all on 16 cores).
set -uo pipefail
out="${OUT:-bench/results}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 JAX_PLATFORMS=cpu
lscpu | grep -E "^Model name|^CPU\(s\)|^Flags" | tee "$out/native_cpu.txt"
SECONDS=0
inc=$(python3 -c "import jaxlib, os; print(os.path.join(os.path.dirname(jaxlib.__file__), 'include'))")
ext=$(python3 -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
objs=$(mktemp -d)
for src in jrnn/native/*.cc; do
  g++ -O3 -std=c++17 -fPIC -Wno-attributes -Wno-return-type -I"$inc" -c "$src" \
    -o "$objs/$(basename "$src" .cc).o" &
done
wait
g++ -shared "$objs"/*.o -o "jrnn/native/_kernels$ext" -lpthread || exit 1
echo "build: ${SECONDS}s"
python3 -c "from jrnn import native; print('kernels:', native.isa(), native.unavailable_reason())"
tests="tests/test_native.py tests/test_native_conv_lstm.py"
timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider -W default::DeprecationWarning \
  $tests 2>&1 | tee "$out/native_tests.txt" | tail -n 15
echo "tests: ${SECONDS}s"
timeout 60 python3 -m bench.fma_peak --seconds 1 2>&1 | tee "$out/native_fma.txt"
JRNN_NATIVE_ISA=avx2 timeout 60 python3 -m bench.fma_peak --seconds 1 2>&1 \
  | tee -a "$out/native_fma.txt"
echo "fma: ${SECONDS}s"
