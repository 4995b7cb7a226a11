#!/usr/bin/env bash
# One prepared run for the GPU machine: GPU tests + GPU benchmark, results under $OUT.
#
# Here (once, with network):   bash benchmarks/gpu_check.sh --fetch-wheels
#   downloads into .whl/ the wheels the GPU image lacks (it has cupy, numba-cuda,
#   numpy, scikit-learn, pandas; not datashader, bokeh, holoviews, umap-learn, pytest).
# There (device tool, carry .whl):   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
    -d .whl datashader colorcet param pyct multipledispatch toolz xarray bokeh tornado xyzservices \
    holoviews panel pyviz_comms umap-learn pynndescent pytest pluggy iniconfig hypothesis sortedcontainers \
    threadpoolctl psutil
  du -sh .whl
  exit 0
fi

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_info.txt"
python3 -m embedscope.cli info | tee -a "$OUT/gpu_info.txt"

# 1. gpu-marked tests: parity of every GPU twin with its CPU twin on real sizes.
timeout "${GPU_TESTS_TIMEOUT:-900}" python3 -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors \
  ${GPU_TESTS_PATHS:-tests} 2>&1 | tee "$OUT/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}

# 2. the benchmark (JSON + markdown table under $OUT).
timeout "${GPU_BENCH_TIMEOUT:-1200}" python3 benchmarks/gpu.py --out "$OUT" ${GPU_BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}

echo "gpu tests exit $tests_rc, benchmark exit $bench_rc"
exit $(( tests_rc || bench_rc ))
