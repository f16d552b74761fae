#!/usr/bin/env bash
# Regenerate kdbench's pinned installs from pyproject.toml's ranges with `uv pip compile`
# (pip install uv).
#
#   cpu.txt   the CPU build of PyTorch (torch==X+cpu, no CUDA libraries): the README's install
#             and CI use it.
#   cuda.txt  PyPI's CUDA build of the same PyTorch release, with its nvidia-* libraries.
#
# Both are for CPython 3.11 on Linux x86_64 (manylinux_2_28), with the dev and docs extras.
# torch.txt beside this file names the PyTorch release. The CPU build of torch comes from
# PyTorch's CPU wheel index; point TORCH_CPU_WHEELS at another folder or page of wheels (a
# local wheelhouse, a mirror) to resolve against that instead.
#
# Then run the tests: tests/test_lock.py checks that both locks satisfy pyproject.toml, and
# that the installed environment is exactly the lock.
set -euo pipefail
cd "$(dirname "$0")/../.."
TORCH_CPU_WHEELS="${TORCH_CPU_WHEELS:-https://download.pytorch.org/whl/cpu/torch/}"
common=(pyproject.toml --extra dev --extra docs -c kdbench/locks/torch.txt
        --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --custom-compile-command "bash kdbench/locks/compile.sh" --no-emit-find-links)
uv pip compile "${common[@]}" --find-links "$TORCH_CPU_WHEELS" -o kdbench/locks/cpu.txt
uv pip compile "${common[@]}" -o kdbench/locks/cuda.txt
