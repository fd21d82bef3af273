#!/usr/bin/env bash
# Install PyTorch suited to this machine into the given Python before anything else pulls torch in:
# the CPU-only build where there is no NVIDIA GPU (never the multi-GB CUDA build), the default
# CUDA build where `nvidia-smi` finds a GPU. A torch already installed is left alone.
set -euo pipefail
python=${1:-python3}
version=${TORCH_VERSION:-2.13.0}
if "$python" -c 'import torch' 2>/dev/null; then
  echo "torch $("$python" -c 'import torch; print(torch.__version__)') already installed"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$python" -m pip install -q "torch==$version"
else
  # A local CPU wheel (find-links) or PyTorch's CPU index; both give the +cpu build.
  "$python" -m pip install -q "torch==$version" --index-url https://download.pytorch.org/whl/cpu --timeout 15 --retries 1 \
    || "$python" -m pip install -q "torch==$version"
fi
"$python" -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'
