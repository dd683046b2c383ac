#!/usr/bin/env bash
# The leaderboard's peers that do not run on hf_bort's stack, each in a virtual environment pinned to versions it
# supports, built from the package registry on a fresh clone: `make peers` (or this script). The pins are here.
#
# TextPruner 1.1.post2 calls BertModel.prune_heads, which transformers 5 removed: transformers 4.44.2. Its setup.py
# compares version strings ("3.11.7" < "3.8" is True) and then pins numpy < 1.22, which has no wheel for Python 3.11
# and does not build, so it is installed with --no-deps after its real dependencies (transformers, torch, tqdm,
# sentencepiece, protobuf, numpy), pinned below.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TEXTPRUNER_VENV=${TEXTPRUNER_VENV:-.venv-textpruner}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x "$TEXTPRUNER_VENV/bin/python" ] || ! "$TEXTPRUNER_VENV/bin/python" -c "import textpruner" 2>/dev/null; then
    "$PYTHON" -m venv "$TEXTPRUNER_VENV"
    "$TEXTPRUNER_VENV/bin/pip" install --quiet --upgrade pip
    "$TEXTPRUNER_VENV/bin/pip" install --quiet "torch==$TORCH_VERSION"
    "$TEXTPRUNER_VENV/bin/pip" install --quiet transformers==4.44.2 numpy==1.26.4 tqdm==4.67.1 sentencepiece==0.2.0 \
        protobuf==5.29.3 safetensors==0.4.5
    "$TEXTPRUNER_VENV/bin/pip" install --quiet --no-deps textpruner==1.1.post2
fi
"$TEXTPRUNER_VENV/bin/python" -c "import textpruner, transformers; print('TextPruner', textpruner.__version__, \
'on transformers', transformers.__version__, 'in', '$TEXTPRUNER_VENV')"
