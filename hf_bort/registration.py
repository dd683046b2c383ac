"""Registration of the `bort` model type with transformers' Auto classes, through their public `register` methods only.

`import hf_bort` registers Bort without importing its modeling code: `transformers.PreTrainedModel` alone pulls in
about 1,500 modules (scipy through transformers' losses, accelerate through weight loading), which would double the
import time of a package most users import for one job. So the config is registered at once (it is light), and each
Auto class registers, through `AutoModel.register` and its siblings, a stand-in class that has the Bort class's name,
module and `config_class` and nothing else. The first time transformers reads anything more from it (`from_pretrained`,
`from_config`, `pipeline`...), the stand-in imports `hf_bort.modeling_bort`, registers the real classes in its place
and hands over what was asked for. No private attribute of transformers is read or replaced, so this keeps working for
as long as `register` takes a class with a `config_class`.
"""

import importlib
import sys

import transformers
from transformers import AutoConfig

from .configuration_bort import BORT_AUTO_MAP, BortConfig


MODELING_MODULE = "hf_bort.modeling_bort"

# Auto class name -> Bort class name (in hf_bort.modeling_bort), from the auto_map that checkpoints carry.
AUTO_CLASSES: dict[str, str] = {
    auto_class: target.split(".")[-1] for auto_class, target in BORT_AUTO_MAP.items() if auto_class != "AutoConfig"
}


class _ImportedOnFirstUse(type):
    """Metaclass of the stand-ins: an attribute a stand-in lacks is read from the real class, imported then."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):  # introspection (copy, typing, inspect) learns nothing from importing the model
            raise AttributeError(name)
        register_bort()
        return getattr(getattr(sys.modules[MODELING_MODULE], cls.__name__), name)


def _stand_in(class_name: str) -> type:
    return _ImportedOnFirstUse(
        class_name,
        (),
        {
            "__module__": MODELING_MODULE,
            "__doc__": f"Stands for {MODELING_MODULE}.{class_name} until transformers first uses it.",
            "config_class": BortConfig,
        },
    )


def register_bort_lazily() -> None:
    """Register the config now and every model class as a stand-in (what `import hf_bort` runs)."""
    if MODELING_MODULE in sys.modules:  # the real classes are loaded already: a stand-in would only replace them
        register_bort()
        return
    AutoConfig.register(BortConfig.model_type, BortConfig, exist_ok=True)
    BortConfig.register_for_auto_class("AutoConfig")
    for auto_class_name, model_class_name in AUTO_CLASSES.items():
        getattr(transformers, auto_class_name).register(BortConfig, _stand_in(model_class_name), exist_ok=True)


def register_bort() -> None:
    """Register Bort's model classes with every Auto class; safe to call repeatedly.

    `register_for_auto_class` makes `save_pretrained`/`push_to_hub` copy the modeling files and write
    `auto_map`, so saved checkpoints load with `trust_remote_code=True` where hf_bort is not installed.
    """
    modeling = importlib.import_module(MODELING_MODULE)
    AutoConfig.register(BortConfig.model_type, BortConfig, exist_ok=True)
    BortConfig.register_for_auto_class("AutoConfig")
    for auto_class_name, model_class_name in AUTO_CLASSES.items():
        model_class = getattr(modeling, model_class_name)
        getattr(transformers, auto_class_name).register(BortConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class_name)


__all__ = ["AUTO_CLASSES", "register_bort", "register_bort_lazily"]
