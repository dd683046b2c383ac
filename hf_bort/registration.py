"""Registration of the `bort` model type with transformers' Auto classes.

`import hf_bort` registers Bort without importing its modeling code: `transformers.PreTrainedModel` alone pulls in
about 1,500 modules (scipy through transformers' losses, accelerate through weight loading), which would double the
import time of a package most users import for one job. So the config is registered at once (it is light), and each
Auto class's mapping gets a deferred entry that imports `hf_bort.modeling_bort` the first time transformers looks a
Bort model class up (`AutoModel.from_config`, `from_pretrained`, `pipeline`...).
"""

import importlib

import transformers
from transformers import AutoConfig

from .configuration_bort import BORT_AUTO_MAP, BortConfig


# Auto class name -> Bort class name (in hf_bort.modeling_bort), from the auto_map that checkpoints carry.
AUTO_CLASSES: dict[str, str] = {
    auto_class: target.split(".")[-1] for auto_class, target in BORT_AUTO_MAP.items() if auto_class != "AutoConfig"
}


class _DeferredModelClass:
    """Stands for a Bort model class in an Auto mapping until transformers first asks for it."""

    def __init__(self, class_name: str):
        self.class_name = class_name

    def resolve(self) -> type:
        register_bort()
        return getattr(importlib.import_module("hf_bort.modeling_bort"), self.class_name)


class _ResolvingContent(dict):
    """The registered-models dict of one `_LazyAutoMapping`, resolving deferred Bort entries on every read path."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return value.resolve() if isinstance(value, _DeferredModelClass) else value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def values(self):
        return [self[key] for key in self]

    def items(self):
        return [(key, self[key]) for key in self]


def _auto_mapping(auto_class_name: str):
    return getattr(transformers, auto_class_name)._model_mapping


def register_bort_lazily() -> None:
    """Register the config now and every model class as a deferred entry (what `import hf_bort` runs)."""
    AutoConfig.register(BortConfig.model_type, BortConfig, exist_ok=True)
    BortConfig.register_for_auto_class("AutoConfig")
    for auto_class_name, model_class_name in AUTO_CLASSES.items():
        mapping = _auto_mapping(auto_class_name)
        if not isinstance(mapping._extra_content, _ResolvingContent):
            mapping._extra_content = _ResolvingContent(mapping._extra_content)
        if BortConfig not in mapping._extra_content:
            dict.__setitem__(mapping._extra_content, BortConfig, _DeferredModelClass(model_class_name))


def register_bort() -> None:
    """Register Bort's model classes with every Auto class; safe to call repeatedly.

    `register_for_auto_class` makes `save_pretrained`/`push_to_hub` copy the modeling files and write
    `auto_map`, so saved checkpoints load with `trust_remote_code=True` where hf_bort is not installed.
    """
    modeling = importlib.import_module("hf_bort.modeling_bort")
    AutoConfig.register(BortConfig.model_type, BortConfig, exist_ok=True)
    BortConfig.register_for_auto_class("AutoConfig")
    for auto_class_name, model_class_name in AUTO_CLASSES.items():
        model_class = getattr(modeling, model_class_name)
        getattr(transformers, auto_class_name).register(BortConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class_name)


__all__ = ["AUTO_CLASSES", "register_bort", "register_bort_lazily"]
