#!/usr/bin/env bash
# The one device call: every GPU step of the check, each with its own timeout, within 500 s.
#
# Here, once, with network (fills .whl/, which .gitignore ignores and the device tool carries):
#     bash benchmarks/gpu_check.sh --fetch-wheels
#   The GPU image has cupy 14, numba + numba-cuda, torch, numpy, scipy, scikit-learn,
#   pandas, pyarrow; the steps also import datashader (raster_100m: aggregate + shade)
#   and the gpu_tests step runs pytest, so only those and their missing dependencies
#   are fetched: 16 MB, datashader 11 of it (no umap-learn, bokeh, holoviews or panel,
#   which no step imports; tests/test_gpu_check.py keeps it so).
#   No GPU needed for `python benchmarks/gpu.py --dry-run --out DIR`: the same steps at tiny
#   sizes on the CPU (~1 min here; tests/test_gpu_check.py runs it).
#
# There, one call of the device tool (its 600 s limit: 500 s of steps, the rest for the
# wheel install and process starts):
#     run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=560)
#   Options after the script name go to benchmarks/gpu.py (--steps a,b --budget S ...;
#   `python benchmarks/gpu.py --list` prints the steps, their timeouts and targets).
#
# It writes under $OUT (default benchmarks/results/gpu/run): <step>.json for each step as
# it ends (status ok / error / timeout / skipped: ... / not implemented, figures, error
# text), <step>.log (its output), gpu_tests.log, and summary.md + summary.json
# (benchmarks/results/gpu/README.md says how to read them). Quality is compared with the
# CPU figures stored in benchmarks/gpu_reference.json (benchmarks/gpu_reference.py
# computes them on a CPU machine; nothing CPU-heavy is fitted on the device).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu/run}
mkdir -p "$OUT"

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p .whl
  plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  # datashader and what it needs beyond the image; pytest and hypothesis (tests/hostile
  # imports it at collection); threadpoolctl and psutil (embedscope's own dependencies).
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
    -d .whl datashader colorcet param pyct multipledispatch toolz xarray \
    pytest pluggy iniconfig pygments hypothesis sortedcontainers threadpoolctl psutil
  du -sh .whl
  exit 0
fi

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "wheel install failed: the steps that need them will say so"
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 benchmarks/gpu.py --out "$OUT" "$@"
