#!/bin/sh
# Give every model of a built Triton model repository a `configs/libtorch_cpu.pbtxt`: its
# production config.pbtxt (PyTorch/libtorch backend) with the instances on the CPU instead of a GPU.
#
#   sh docker/derive_cpu_configs.sh MODEL_REPOSITORY
#
# NVIDIA's Triton image then serves the same TorchScript files on a node without a GPU with
# `tritonserver --model-config-name=libtorch_cpu` (the deploy/overlays/cpu overlay). This differs
# from configs/cpu.pbtxt, which runs them through the Python backend for the pytriton wheel that
# has no libtorch backend. The derivation is this one substitution, so the two cannot drift apart.
set -eu

repository=${1:?usage: derive_cpu_configs.sh MODEL_REPOSITORY}
found=0
for config in "$repository"/*/config.pbtxt; do
  [ -f "$config" ] || continue
  grep -q 'KIND_GPU' "$config" || { echo "derive_cpu_configs: $config has no KIND_GPU instance group" >&2; exit 1; }
  model_dir=$(dirname "$config")
  mkdir -p "$model_dir/configs"
  {
    echo "# Derived from config.pbtxt by docker/derive_cpu_configs.sh: the libtorch backend on the CPU."
    echo "# Select with tritonserver --model-config-name=libtorch_cpu. Do not edit; edit config.pbtxt."
    sed 's/KIND_GPU/KIND_CPU/g' "$config"
  } >"$model_dir/configs/libtorch_cpu.pbtxt"
  found=$((found + 1))
done
[ "$found" -gt 0 ] || { echo "derive_cpu_configs: no */config.pbtxt under $repository" >&2; exit 1; }
echo "derive_cpu_configs: wrote configs/libtorch_cpu.pbtxt for $found models"
