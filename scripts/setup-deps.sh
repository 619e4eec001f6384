#!/usr/bin/env bash
# Installs what Loom needs to build and test, from Debian 12 packages. Idempotent: when everything is
# there it only asks dpkg and returns in well under a second.
set -euo pipefail

packages=(
  build-essential cmake git ca-certificates
  libtorch-dev          # LibTorch 1.13 (CPU)
  libopenblas0-openmp   # without it LibTorch's matmul falls back to the reference BLAS (~10x slower)
  libdnnl-dev           # oneDNN's sgemm for the block kernel's tile products on the CPU (1.5x OpenBLAS at K or N = 32)
  libopenmpi-dev openmpi-bin
  libhdf5-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev
  iproute2              # network namespaces and tc for the emulated cluster (scripts/cluster)
  python3 python3-venv  # the interop test reads Loom's exports with Python packages in a virtualenv
  python3-yaml          # the regression harness reads its cases (tests/regression)
  gnuplot-nox           # `loom summary RUN --plot out.png`
  slurmctld slurmd slurm-client  # the Slurm test runs its own one-node cluster (tests/slurm; the services stay unconfigured)
  clang libclang-rt-14-dev  # libFuzzer, ASan and UBSan for the reader fuzz test
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
