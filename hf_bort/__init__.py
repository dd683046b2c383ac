"""hf_bort: Bort for the Hugging Face ecosystem.

Importing the package registers the `bort` model type with transformers' Auto classes, so
`AutoModel.from_pretrained(".../bort")` works like any built-in model.
"""

from .agora import AgoraArguments, AgoraTrainer, carve_dev_split, plot_agora_history
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
from .ose import Architecture, OSEConfig, OSEResult, OSESearch, SearchSpace, extract_subnetwork
from .registration import register_bort


register_bort()

__version__ = "0.1.0"

__all__ = [
    "AgoraArguments",
    "AgoraTrainer",
    "carve_dev_split",
    "plot_agora_history",
    "load_glue_metric",
    "render_model_card",
    "save_model_card",
    "DistillationArguments",
    "DistillationTrainer",
    "Architecture",
    "OSEConfig",
    "OSEResult",
    "OSESearch",
    "SearchSpace",
    "extract_subnetwork",
    "BortConfig",
    "BortForMaskedLM",
    "BortForMultipleChoice",
    "BortForQuestionAnswering",
    "BortForSequenceClassification",
    "BortForTokenClassification",
    "BortModel",
    "BortPreTrainedModel",
    "OnnxEncoder",
    "compile_for_cpu",
    "convert_bert_checkpoint",
    "export_onnx",
    "quantize_dynamic_int8",
    "quantize_onnx_int8",
    "register_bort",
]
