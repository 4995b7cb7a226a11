#!/usr/bin/env bash
# Carry RAPIDS cuML onto the device machine in chunks, one device call per chunk, and run
# the cuML tests there (docs/gpu.md, "cuML on the device", says when this fits a budget).
#
# Here, with network (fills .cuml/, which .gitignore ignores):
#     bash benchmarks/cuml_carry.sh --fetch            # wheels -> .cuml/whl, then --split
#     bash benchmarks/cuml_carry.sh --split            # .cuml/whl -> .cuml/chunk.NNN + .cuml/MANIFEST
#   It prints how many calls the carry takes and refuses (exit 3) above MAX_CHUNKS
#   (default 8): each call costs device time, and all of them must land on one warm machine.
#   CHUNK_MIB (default 56), CUDA (cu13) and CUML_VERSION (26.10.*) are read from the environment.
#
# There, one call per chunk, each within the machine's 30 s warm window of the last:
#     run(command="bash benchmarks/cuml_carry.sh --have", carry=[".cuml/MANIFEST", ".cuml/chunk.000"])
#     run(command="bash benchmarks/cuml_carry.sh --have", carry=[".cuml/MANIFEST", ".cuml/chunk.001"])
#     ...
#   and with the last chunk:
#     run(command="bash benchmarks/cuml_carry.sh --install-and-test",
#         carry=[".cuml/MANIFEST", ".cuml/chunk.NNN"], timeout_s=420)
#   --have lists the chunks present and the ones still missing; --install-and-test
#   checks every chunk's sha256, joins and unpacks them, pip-installs the wheels into
#   .cuml/site (no index, no deps) and runs the cuML tests with the gpu mark. A chunk
#   lost (the machine went back between calls) shows as missing: start again from 000.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=.cuml
CHUNK_MIB=${CHUNK_MIB:-56}   # + the working tree (~2 MiB) + MANIFEST stays under the 64 MiB carry
MAX_CHUNKS=${MAX_CHUNKS:-8}
CUDA=${CUDA:-cu13}           # the device image is CUDA 13 (cupy-cuda13x, nvidia-* cu13)
VERSION=${CUML_VERSION:-26.10.*}

fetch() {
  mkdir -p "$DIR/whl"
  local plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
              --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  # cuML and the RAPIDS libraries it loads; CUDA's own libraries (nvidia-*), cupy,
  # numba(-cuda), cuda-python, numpy, scipy, scikit-learn, pandas are in the image.
  # Check the list against `unzip -p .cuml/whl/cuml_*.whl '*/METADATA' | grep ^Requires-Dist`.
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d "$DIR/whl" \
    "cuml-$CUDA==$VERSION" "libcuml-$CUDA==$VERSION" "libcuvs-$CUDA==$VERSION" \
    "pylibraft-$CUDA==$VERSION" "libraft-$CUDA==$VERSION" "rmm-$CUDA==$VERSION" \
    "librmm-$CUDA==$VERSION" rapids-logger treelite || exit 1
  du -sh "$DIR/whl"
}

split_chunks() {
  ls "$DIR"/whl/*.whl >/dev/null 2>&1 || { echo "no wheels in $DIR/whl (run --fetch)"; exit 1; }
  rm -f "$DIR"/chunk.* "$DIR/MANIFEST"
  tar -C "$DIR/whl" -cf - . | split -b "${CHUNK_MIB}m" -d -a 3 - "$DIR/chunk."
  (cd "$DIR" && sha256sum chunk.* > MANIFEST)
  local n
  n=$(wc -l < "$DIR/MANIFEST")
  echo "$n chunks of <= ${CHUNK_MIB} MiB: $n device calls, each within 30 s of the last"
  if [ "$n" -gt "$MAX_CHUNKS" ]; then
    echo "more than MAX_CHUNKS=$MAX_CHUNKS calls: too many for one session's device time (docs/gpu.md)"
    exit 3
  fi
}

have() {
  [ -f "$DIR/MANIFEST" ] || { echo "no $DIR/MANIFEST here: carry it with each chunk"; exit 1; }
  local missing=0 name sum
  while read -r sum name; do
    if [ -f "$DIR/$name" ] && [ "$(sha256sum < "$DIR/$name" | cut -d' ' -f1)" = "$sum" ]; then
      echo "have    $name"
    else
      echo "missing $name"; missing=$((missing + 1))
    fi
  done < "$DIR/MANIFEST"
  echo "$missing missing"
  return "$missing"
}

install_and_test() {
  have || { echo "chunks missing: nothing installed"; exit 1; }
  rm -rf "$DIR/unpacked" && mkdir -p "$DIR/unpacked" "${OUT:-$DIR}"
  cat "$DIR"/chunk.* | tar -C "$DIR/unpacked" -xf - || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$DIR/site" "$DIR"/unpacked/*.whl || exit 1
  export PYTHONPATH="$PWD/$DIR/site:$PWD" PYTHONUNBUFFERED=1
  python3 -c "import cuml; print('cuml', cuml.__version__)" || exit 1
  python3 -m pytest -q -m gpu tests/test_cuml_gpu.py tests/test_cuml_adapter.py 2>&1 \
    | tee "${OUT:-$DIR}/cuml_tests.log"
}

case "${1:-}" in
  --fetch) fetch && split_chunks ;;
  --split) split_chunks ;;
  --have) have ;;
  --install-and-test) install_and_test ;;
  *) sed -n '2,25p' "$0"; exit 2 ;;
esac
