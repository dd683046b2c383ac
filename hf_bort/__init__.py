"""hf_bort: Bort for the Hugging Face ecosystem.

Importing the package registers the `bort` model type with transformers' Auto classes, so
`AutoModel.from_pretrained(".../bort")` works like any built-in model.
"""

from .configuration_bort import BortConfig
from .convert import convert_bert_checkpoint
from .modeling_bort import (
    BortForMaskedLM,
    BortForMultipleChoice,
    BortForQuestionAnswering,
    BortForSequenceClassification,
    BortForTokenClassification,
    BortModel,
    BortPreTrainedModel,
)
from .registration import register_bort


register_bort()

__version__ = "0.1.0"

__all__ = [
    "BortConfig",
    "BortForMaskedLM",
    "BortForMultipleChoice",
    "BortForQuestionAnswering",
    "BortForSequenceClassification",
    "BortForTokenClassification",
    "BortModel",
    "BortPreTrainedModel",
    "convert_bert_checkpoint",
    "register_bort",
]
