"""Optional dependencies: each is imported where it is used, and a missing one names the extra that installs it."""

import importlib
from types import ModuleType


# import name -> (pip extra of hf-bort, what needs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "matplotlib": ("plots", "plots (OSEResult.plot, plot_agora_history)"),
    "peft": ("lora", "LoRA fine-tuning (recipes/glue.py --lora)"),
    "onnxruntime": ("onnx", "ONNX Runtime inference"),
    "onnx": ("onnx", "ONNX export"),
    "optimum": ("onnx", "ORTModelForSequenceClassification"),
    "faiss": ("faiss", "faiss search of an Agora pool (PoolSampler(index='faiss'))"),
}


def require(module: str) -> ModuleType:
    """Import an optional dependency, or raise an ImportError that says which hf-bort extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra, purpose = EXTRAS[module.split(".")[0]]
        raise ImportError(
            f"{module} is needed for {purpose} but is not installed: pip install 'hf-bort[{extra}]'."
        ) from error


__all__ = ["EXTRAS", "require"]
