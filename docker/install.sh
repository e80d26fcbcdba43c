#!/usr/bin/env bash
# Install torch and bidsfusion into a fresh virtual environment, then check the command.
#
#   docker/install.sh VENV WHEEL
#
# VENV: created with "$PYTHON -m venv" (PYTHON defaults to python3); WHEEL: the
# bidsfusion wheel (any pip requirement works). TORCH_VERSION (default 2.13.0)
# and TORCH_VARIANT choose torch, installed first so that bidsfusion keeps it:
#   cpu (default)        the CPU build, from https://download.pytorch.org/whl/cpu
#   cu126, cu128, ...    a CUDA build, from https://download.pytorch.org/whl/<variant>
#                        (the CUDA versions of each torch release: pytorch.org)
#   pypi                 plain "pip install torch==TORCH_VERSION" from pip's configured
#                        index (PyPI's default Linux wheel is a CUDA build)
# Pip options come from the environment (the Dockerfile sets PIP_NO_CACHE_DIR=1).
# The Dockerfile runs this script; tests/test_containers.py runs it in a temporary
# folder (TORCH_VARIANT=pypi), so the image's install steps are tested without Docker.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 VENV WHEEL" >&2
  exit 64
fi
venv=$1
wheel=$2
torch_version=${TORCH_VERSION:-2.13.0}
variant=${TORCH_VARIANT:-cpu}

case "$variant" in
  pypi) index=() ;;
  cpu | cu[0-9]* | rocm[0-9]*) index=(--index-url "https://download.pytorch.org/whl/$variant") ;;
  *)
    echo "TORCH_VARIANT must be cpu, cuXYZ, rocmX.Y or pypi, not '$variant'" >&2
    exit 64
    ;;
esac

"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install "torch==$torch_version" ${index[@]+"${index[@]}"}
"$venv/bin/python" -m pip install "$wheel"

# the command works, every plugin loads, and the MNI template ships with nilearn (no download)
"$venv/bin/bidsfusion" --version
"$venv/bin/bidsfusion" plugins >/dev/null
"$venv/bin/python" -c "from bidsfusion.space import mni_template; mni_template()"
