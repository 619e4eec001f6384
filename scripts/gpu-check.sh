#!/usr/bin/env bash
# The GPU checks: builds Loom's kernels, attention kernels, model, `gpu` tests and the benchmark
# programs against the GPU machine's own CUDA LibTorch (the one inside its Python torch), then runs
# the tests, loom-block-bench and loom-lact-bench. A kernels-only build (LOOM_KERNELS_ONLY), so the machine needs no MPI, HDF5 or CLI11.
#
#   scripts/gpu-check.sh --fetch-deps   on a Debian 12 machine with apt: puts the .debs of what the
#                                       kernels-only build still needs (yaml-cpp, nlohmann-json,
#                                       googletest) into .gpu-deps/, for a GPU machine that has none
#   scripts/gpu-check.sh [block] [lact] on the GPU machine (the named benchmarks; default both);
#                                       unpacks .gpu-deps/ if present
#   scripts/gpu-check.sh --no-bench     the same, the tests alone
set -euo pipefail
cd "$(dirname "$0")/.."
deps=.gpu-deps
if [ "${1:-}" = --fetch-deps ]; then
  mkdir -p "$deps"
  (cd "$deps" && apt-get download libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev libgtest-dev)
  exit 0
fi

prefix_path=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
if compgen -G "$deps/*.deb" > /dev/null; then
  unpacked=/tmp/loom-gpu-deps
  for f in "$deps"/*.deb; do dpkg -x "$f" "$unpacked"; done
  prefix_path="$prefix_path;$unpacked/usr"
  export LD_LIBRARY_PATH="$unpacked/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DLOOM_KERNELS_ONLY=ON -DLOOM_WITH_CUDA=ON \
  -DLOOM_CUDA_ARCHITECTURES="${LOOM_CUDA_ARCHITECTURES:-90}" -DCMAKE_PREFIX_PATH="$prefix_path"
cmake --build build-gpu -j "$(nproc)"

status=0
build-gpu/tests/gpu/loom_gpu_tests || status=$?
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(block lact)
[ "${benches[0]}" = --no-bench ] && benches=()
for bench in "${benches[@]}"; do
  build-gpu/loom-"$bench"-bench || status=$?
done
exit $status
