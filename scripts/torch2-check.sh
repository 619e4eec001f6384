#!/usr/bin/env bash
# Builds all of Loom against PyPI's LibTorch 2.x, the CUDA build a GPU machine runs, on a machine
# without a GPU, and runs the CPU tests and regression cases with it: what the full build of a GPU
# session would otherwise find out first, with its minutes. Not part of scripts/test.sh (0.8 GB of
# downloads, 20 minutes on 2 cores with the tests).
#
#   scripts/torch2-check.sh [VERSION]     default 2.11.0; downloads cached in ~/.cache/loom-torch2
#
# The wheel's CUDA libraries need three more from their own wheels to link (cuSPARSELt, NVSHMEM,
# cuFile), at the versions torch's metadata pins; the CUDA toolkit (nvcc, cudart, NCCL) comes from
# /usr/local/cuda as for the GPU build. Build in build-torch2/, regression runs under it.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-2.11.0}"
cache="${LOOM_TORCH2_CACHE:-$HOME/.cache/loom-torch2}/$version"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -f "$cache/unpacked" ]; then
  mkdir -p "$cache/wheels"
  pip download --no-deps --dest "$cache/wheels" "torch==$version"
  pins=$(python3 - "$cache"/wheels/torch-*.whl << 'EOF'
import re, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
text = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
for name in ("nvidia-cusparselt", "nvidia-nvshmem"):
    pin = re.search(r"^Requires-Dist: (%s[\w-]*==[\w.]+)" % name, text, re.M)
    print(pin.group(1) if pin else name + "-cu13")
EOF
  )
  # shellcheck disable=SC2086  # one argument per pin
  pip download --no-deps --dest "$cache/wheels" $pins nvidia-cufile
  for wheel in "$cache"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$cache"; done
  touch "$cache/unpacked"
fi

nvidia_libs=$(find "$cache/nvidia" -name 'lib' -type d | paste -sd:)
export LD_LIBRARY_PATH="$nvidia_libs:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
# Torch's CMake config compiles CUDA for the GPUs it sees, or for every architecture without one.
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
cmake -S . -B build-torch2 -DCMAKE_BUILD_TYPE=Release -DLOOM_WITH_CUDA=ON -DLOOM_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="$cache/torch/share/cmake" -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$nvidia_libs"
cmake --build build-torch2 -j "$(nproc)"
build-torch2/loom --version

status=0
(cd build-torch2 && ctest -LE 'gpu|interop|regression|slurm' -j "$(nproc)" --output-on-failure) || status=1
scripts/regression.sh --loom build-torch2/loom --work build-torch2/regression || status=1
exit $status
