"""hf_bort: Bort for the Hugging Face ecosystem.

Importing the package registers the `bort` model type with transformers' Auto classes, so
`AutoModel.from_pretrained(".../bort")` works like any built-in model. Everything else loads on first use, the way
transformers and trl do it: `import hf_bort` costs about what `from transformers import AutoModel` costs, and the
names below are imported from their modules when first accessed.

The imports under `TYPE_CHECKING` are the one list of the public names (type checkers and IDEs read them); at run time
the same lines are read from this file's source, as transformers' `define_import_structure` reads its modules'
`__all__` without importing them, to know which module provides each name.
"""

import ast
import importlib
from typing import TYPE_CHECKING

from .registration import register_bort_lazily


__version__ = "0.1.0"

if TYPE_CHECKING:
    from .agora import AgoraArguments, AgoraState, AgoraTrainer, PoolSampler, carve_dev_split, plot_agora_history
    from .compression import CompressConfig, CompressResult, compress, compress_search
    from .configuration_bort import BortConfig
    from .convert import convert_bert_checkpoint
    from .distill import DistillationArguments, DistillationTrainer
    from .export import OnnxEncoder, compile_for_cpu, export_onnx, quantize_dynamic_int8, quantize_onnx_int8
    from .hub import render_model_card, save_model_card
    from .metrics import load_glue_metric
    from .modeling_bort import (
        BortForMaskedLM,
        BortForMultipleChoice,
        BortForQuestionAnswering,
        BortForSequenceClassification,
        BortForTokenClassification,
        BortModel,
        BortPreTrainedModel,
    )
    from .modeling_ort import ORTModelForSequenceClassification
    from .ose import Architecture, OSEConfig, OSEResult, OSESearch, SearchSpace, extract_subnetwork
    from .registration import register_bort


def _public_names() -> dict[str, str]:
    """Public name -> the module (relative to hf_bort) that provides it, from the `TYPE_CHECKING` imports above."""
    tree = ast.parse(__spec__.loader.get_source(__name__))
    (block,) = (node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    return {alias.name: node.module for node in block.body for alias in node.names}


_NAME_TO_MODULE = _public_names()


def __getattr__(name: str):
    module_name = _NAME_TO_MODULE.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    if module_name == "modeling_bort":
        module_registration = importlib.import_module(".registration", __name__)
        module_registration.register_bort()  # a model class in hand must also save its auto_map
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAME_TO_MODULE})


register_bort_lazily()

__all__ = ["__version__", *_NAME_TO_MODULE]
