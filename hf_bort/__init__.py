"""hf_bort: Bort for the Hugging Face ecosystem.

Importing the package registers the `bort` model type with transformers' Auto classes, so
`AutoModel.from_pretrained(".../bort")` works like any built-in model. Everything else loads on first use, the way
transformers and trl do it: `import hf_bort` costs about what `from transformers import AutoModel` costs, and the
names below are imported from their modules when first accessed.
"""

import importlib
from typing import TYPE_CHECKING

from .registration import register_bort_lazily


__version__ = "0.1.0"

# module (relative to hf_bort) -> the public names it provides
_import_structure: dict[str, list[str]] = {
    "agora": ["AgoraArguments", "AgoraState", "AgoraTrainer", "PoolSampler", "carve_dev_split", "plot_agora_history"],
    "configuration_bort": ["BortConfig"],
    "convert": ["convert_bert_checkpoint"],
    "distill": ["DistillationArguments", "DistillationTrainer"],
    "export": ["OnnxEncoder", "compile_for_cpu", "export_onnx", "quantize_dynamic_int8", "quantize_onnx_int8"],
    "hub": ["render_model_card", "save_model_card"],
    "metrics": ["load_glue_metric"],
    "modeling_bort": [
        "BortForMaskedLM",
        "BortForMultipleChoice",
        "BortForQuestionAnswering",
        "BortForSequenceClassification",
        "BortForTokenClassification",
        "BortModel",
        "BortPreTrainedModel",
    ],
    "modeling_ort": ["ORTModelForSequenceClassification"],
    "ose": ["Architecture", "OSEConfig", "OSEResult", "OSESearch", "SearchSpace", "extract_subnetwork"],
    "registration": ["register_bort"],
}
_name_to_module = {name: module for module, names in _import_structure.items() for name in names}

if TYPE_CHECKING:
    from .agora import AgoraArguments, AgoraState, AgoraTrainer, PoolSampler, carve_dev_split, plot_agora_history
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


def __getattr__(name: str):
    module_name = _name_to_module.get(name)
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
    return sorted({*globals(), *_name_to_module})


register_bort_lazily()

__all__ = [
    "__version__",
    "AgoraArguments",
    "AgoraState",
    "AgoraTrainer",
    "Architecture",
    "BortConfig",
    "BortForMaskedLM",
    "BortForMultipleChoice",
    "BortForQuestionAnswering",
    "BortForSequenceClassification",
    "BortForTokenClassification",
    "BortModel",
    "BortPreTrainedModel",
    "DistillationArguments",
    "DistillationTrainer",
    "ORTModelForSequenceClassification",
    "OSEConfig",
    "OSEResult",
    "OSESearch",
    "OnnxEncoder",
    "PoolSampler",
    "SearchSpace",
    "carve_dev_split",
    "compile_for_cpu",
    "convert_bert_checkpoint",
    "export_onnx",
    "extract_subnetwork",
    "load_glue_metric",
    "plot_agora_history",
    "quantize_dynamic_int8",
    "quantize_onnx_int8",
    "register_bort",
    "render_model_card",
    "save_model_card",
]
