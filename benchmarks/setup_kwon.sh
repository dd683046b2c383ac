#!/usr/bin/env bash
# The leaderboard's retraining-free peer, Kwon et al. 2022 ("A Fast Post-Training Pruning Framework for
# Transformers", arXiv:2204.09656; reference code github.com/WoosukKwon/retraining-free-pruning at 806ac5a), in its
# own virtual environment pinned to versions it supports, built from the package registry on a fresh clone.
#
# Why its own venv: the method masks heads through `head_mask=` (BertForSequenceClassification.forward) and calls
# BertLayer positionally (hidden_states, attention_mask, head_mask), which transformers 5 removed: transformers 4.44.2,
# as for TextPruner. Its mask tuning solves least squares with LSMR: scipy (the reference uses cupy's port of scipy's
# LSMR on a GPU). The reference code is not on PyPI and has no license file, so it is neither installed nor vendored:
# benchmarks/kwon_prune.py implements the method (see its docstring and benchmarks/results/leaderboard/kwon_peer.md).
#
#     bash benchmarks/setup_kwon.sh        # or `make peers` once the Makefile calls it
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
KWON_VENV=${KWON_VENV:-.venv-kwon}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x "$KWON_VENV/bin/python" ] || ! "$KWON_VENV/bin/python" -c "import scipy, transformers, safetensors" 2>/dev/null; then
    "$PYTHON" -m venv "$KWON_VENV"
    echo "*" >"$KWON_VENV/.gitignore"  # the venv ignores itself (the repository's .gitignore is not touched)
    "$KWON_VENV/bin/pip" install --quiet --upgrade pip
    "$KWON_VENV/bin/pip" install --quiet "torch==$TORCH_VERSION"
    "$KWON_VENV/bin/pip" install --quiet transformers==4.44.2 numpy==1.26.4 scipy==1.13.1 tqdm==4.67.1 \
        safetensors==0.4.5
fi
"$KWON_VENV/bin/python" -c "import scipy, torch, transformers; print('Kwon et al. peer: transformers', \
transformers.__version__, 'torch', torch.__version__, 'scipy', scipy.__version__, 'in', '$KWON_VENV')"
