"""hf_bort keeps working when its dependencies move: it uses only the public API of transformers, datasets and
accelerate, and names each of its own public symbols once."""

import ast
import inspect
import re
from pathlib import Path

import accelerate
import datasets
import transformers

import hf_bort
from tests.conftest import REPO_ROOT


LIBRARIES = ("transformers", "datasets", "accelerate")

# What transformers asks of a model's author (its guides to adding a model and to the attention interface): a model
# declares these class attributes, overrides `_init_weights`, and reads `config._attn_implementation` to pick its
# attention function. They are the contract of a custom model, and transformers' own common model tests
# (tests/test_transformers_common.py) check Bort against it on every installed version.
MODEL_AUTHOR_CONTRACT = {
    "_attn_implementation",
    "_can_record_outputs",
    "_init_weights",
    "_no_split_modules",
    "_supports_attention_backend",
    "_supports_flash_attn",
    "_supports_flex_attn",
    "_supports_sdpa",
    "_tied_weights_keys",
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _library_private_names() -> set[str]:
    """The private names of what hf_bort builds on: the attributes and methods of the classes it subclasses or calls
    (with the instance attributes their code assigns) and of the Auto mappings."""
    classes = [
        transformers.Trainer,
        transformers.TrainingArguments,
        transformers.TrainerCallback,
        transformers.PreTrainedModel,
        transformers.PreTrainedConfig,
        transformers.HfArgumentParser,
        transformers.AutoConfig,
        transformers.AutoModel,
        datasets.Dataset,
        datasets.DatasetDict,
        accelerate.Accelerator,
        accelerate.PartialState,
    ]
    names = set()
    for cls in classes:
        for klass in (k for k in cls.__mro__ if k.__module__.split(".")[0] in LIBRARIES):
            names |= {name for name in vars(klass) if _is_private(name)}
            names |= set(re.findall(r"self\.(_[A-Za-z]\w*)\s*(?::[^=\n]+)?=", inspect.getsource(klass)))
    for mapping in (transformers.MODEL_MAPPING, transformers.CONFIG_MAPPING):
        names |= {name for name in vars(mapping) if _is_private(name)}
    return names


def _base_names(node: ast.ClassDef) -> set[str]:
    return {base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "") for base in node.bases}


def _library_derived(trees: dict[str, ast.Module]) -> set[str]:
    """hf_bort's classes that subclass a class of transformers, datasets or accelerate (directly, or through another
    hf_bort class): their `self._x` are the library's attributes too."""
    imported = {
        alias.asname or alias.name
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES
        for alias in node.names
    }
    classes = {
        node.name: _base_names(node)
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    derived: set[str] = set()
    while True:
        grown = derived | {name for name, bases in classes.items() if bases & (imported | derived)}
        if grown == derived:
            return derived
        derived = grown


def private_uses(sources: dict[str, str], library_private: set[str]) -> dict[str, list[str]]:
    """Where each source imports a private name or module of transformers, datasets or accelerate, reads or assigns
    one of their private attributes, or overrides one of their private methods ({file: ["line: what"]}).

    An attribute is the library's when it is one of `library_private` and is read on `self` in a class derived from a
    library class, or read on anything else while hf_bort defines no attribute of that name itself."""
    trees = {name: ast.parse(source) for name, source in sources.items()}
    derived = _library_derived(trees)
    suspect = library_private - MODEL_AUTHOR_CONTRACT
    own = {
        defined
        for tree in trees.values()
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef) and cls.name not in derived
        for defined in _defined_names(cls)
    }
    found = {}
    for name, tree in trees.items():
        uses = []
        for cls_or_module in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef))]:
            in_derived = isinstance(cls_or_module, ast.ClassDef) and cls_or_module.name in derived
            nodes = ast.walk(cls_or_module) if isinstance(cls_or_module, ast.ClassDef) else _outside_classes(tree)
            for node in nodes:
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
                    parts = node.module.split(".") + [alias.name for alias in node.names]
                    uses += [f"{node.lineno}: from {node.module} import {part}" for part in parts if _is_private(part)]
                elif isinstance(node, ast.Import):
                    uses += [
                        f"{node.lineno}: import {alias.name}"
                        for alias in node.names
                        if alias.name.split(".")[0] in LIBRARIES and any(map(_is_private, alias.name.split(".")))
                    ]
                elif isinstance(node, ast.Attribute) and node.attr in suspect:
                    on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                    on_self |= isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "super"
                    if (on_self and in_derived) or (not on_self and node.attr not in own):
                        uses.append(f"{node.lineno}: .{node.attr}")
                elif isinstance(node, ast.FunctionDef) and in_derived and node.name in suspect:
                    uses.append(f"{node.lineno}: def {node.name}")
        if uses:
            found[name] = sorted(set(uses), key=lambda use: int(use.split(":")[0]))
    return found


def _defined_names(cls: ast.ClassDef) -> set[str]:
    """The methods and attributes a class defines (`def name`, `name = ...`, `self.name = ...`)."""
    names = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        for target in getattr(node, "targets", None) or [getattr(node, "target", None)]:
            names.add(getattr(target, "attr", None) or getattr(target, "id", None))
    return names - {None}


def _outside_classes(tree: ast.Module):
    """The nodes of a module that no class contains (a class's own are visited with the class)."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if not isinstance(node, ast.ClassDef):
            yield node
            stack.extend(ast.iter_child_nodes(node))


def test_the_private_use_check_finds_what_hf_bort_once_did():
    """The check below against the ways hf_bort once reached into transformers (a registration that replaced the Auto
    mappings' registered-models dict, a Trainer whose private checkpoint methods it overrode), and past hf_bort's own
    private names (`_evaluate` is also a private method of `Trainer`)."""
    source = (
        "from transformers.models.auto.auto_factory import _LazyAutoMapping\n"
        "mapping = transformers.AutoModel._model_mapping\n"
        "mapping._extra_content = dict(mapping._extra_content)\n"
        "from transformers import Trainer\n"
        "class T(Trainer):\n"
        "    def _save_checkpoint(self, model, trial):\n"
        "        folder = self._get_output_dir(trial)\n"
        "    def _my_own_helper(self):\n"
        "        return self._my_own_state\n"
        "class Search:\n"
        "    def _evaluate(self):\n"
        "        return self._evaluate\n"
        "Search()._evaluate()\n"
    )
    assert private_uses({"old.py": source}, _library_private_names()) == {
        "old.py": [
            "1: from transformers.models.auto.auto_factory import _LazyAutoMapping",
            "2: ._model_mapping",
            "3: ._extra_content",
            "6: def _save_checkpoint",
            "7: ._get_output_dir",
        ]
    }


def test_hf_bort_uses_no_private_attribute_of_transformers_datasets_or_accelerate():
    sources = {
        str(path.relative_to(REPO_ROOT)): path.read_text(encoding="utf-8")
        for path in sorted((REPO_ROOT / "hf_bort").rglob("*.py"))
    }
    found = private_uses(sources, _library_private_names())
    assert found == {}, f"hf_bort reaches into private attributes of {', '.join(LIBRARIES)}: {found}"


def test_hf_bort_names_each_public_symbol_once():
    """Each public name is listed once in hf_bort/__init__.py (it once was three times: a dict of strings, the
    imports type checkers read, and `__all__`), and every listed name is what `hf_bort.<name>` gives."""
    tree = ast.parse(Path(hf_bort.__file__).read_text(encoding="utf-8"))
    listed = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names]
    listed += [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    public = [name for name in hf_bort.__all__ if name != "__version__"]
    assert len(public) == len(set(public)) == 37
    assert {name: listed.count(name) for name in public} == dict.fromkeys(public, 1)
    for name in public:
        value = getattr(hf_bort, name)
        assert value.__module__.startswith("hf_bort.") and value.__name__ == name
    assert set(public) <= set(dir(hf_bort))
