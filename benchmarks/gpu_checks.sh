#!/usr/bin/env bash
# The GPU checks of the scale-out work, in one go (each part under a timeout: 8.5 minutes at most), for a machine with
# torch, diffusers, transformers and accelerate installed: `bash benchmarks/gpu_checks.sh OUT_DIR`.
# Each benchmark's table goes to OUT_DIR/<name>.txt; nothing downloads (random weights).
set -uo pipefail
out=${1:-gpu-figures}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
$py -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/device.txt"
# images/s and peak memory: paper scale 256 and 512, DDIM 50 and DPM-Solver++ 20, batch 1/8/32, fp32/bf16
timeout 330 $py benchmarks/paper_throughput.py --preset celeba256 celeba512 --device cuda \
    --dtype float32 bfloat16 --solver ddim:50 dpm:20 --batch 1 8 32 --steps 10 2>&1 | tee "$out/throughput.txt"
# one dynamic-diffuser training step at batch 8 and its peak memory (the release ran out on 24 GB cards)
timeout 90 $py benchmarks/diffuser_step.py --scale paper --device cuda --batch 8 2>&1 | tee "$out/diffuser_step.txt"
# Imagic's two optimisations per step, fp32 and bf16 autocast, and the time of a whole edit
timeout 90 $py benchmarks/edit_step.py --scale paper --device cuda --steps 5 --dtype float32 bfloat16 \
    2>&1 | tee "$out/edit_step.txt"
