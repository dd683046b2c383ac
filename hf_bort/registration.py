"""Registration of the `bort` model type with transformers' Auto classes."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_bort import BortConfig
from .modeling_bort import (
    BortForMaskedLM,
    BortForMultipleChoice,
    BortForQuestionAnswering,
    BortForSequenceClassification,
    BortForTokenClassification,
    BortModel,
)


AUTO_CLASSES = {
    AutoModel: BortModel,
    AutoModelForMaskedLM: BortForMaskedLM,
    AutoModelForSequenceClassification: BortForSequenceClassification,
    AutoModelForMultipleChoice: BortForMultipleChoice,
    AutoModelForTokenClassification: BortForTokenClassification,
    AutoModelForQuestionAnswering: BortForQuestionAnswering,
}


def register_bort() -> None:
    """Register Bort with every Auto class; safe to call repeatedly and on transformers versions that know "bort".

    `register_for_auto_class` makes `save_pretrained`/`push_to_hub` copy the modeling files and write
    `auto_map`, so saved checkpoints load with `trust_remote_code=True` where hf_bort is not installed.
    """
    AutoConfig.register(BortConfig.model_type, BortConfig, exist_ok=True)
    BortConfig.register_for_auto_class("AutoConfig")
    for auto_class, model_class in AUTO_CLASSES.items():
        auto_class.register(BortConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)
