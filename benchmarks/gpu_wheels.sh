#!/bin/sh
# The Python packages benchmarks/gpu_check.py needs that a bare GPU machine (Python 3.12, PyTorch, no network) may
# lack or hold in another version, downloaded here as wheels into .whl/ (git-ignored) to travel with the tree.
# Then, on the GPU machine, from the repository root:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu_check.py --out gpu-report
# Versions are those the test suite runs with; torch, torchvision, accelerate, safetensors, click, numpy, scipy,
# requests, tqdm, anyio, h11 and hf-xet are expected on that machine.
set -eu
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl \
    huggingface_hub==2.4.0 httpx2==2.3.0 httpcore2==2.3.0 truststore==0.10.5 timm==1.0.31 pyautoattack==0.2.0 \
    foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3 torchattacks==3.5.1 adv-lib==0.2.8
ls .whl
