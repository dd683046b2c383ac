"""Model cards for fine-tuned models, rendered from the Jinja templates of `model_cards/`.

The repository's top-level `model_cards/` is the templates' one source; a built wheel installs it as the package
data `hf_bort/model_cards/` (see setup.py), and a checkout (editable install or PYTHONPATH) reads it in place.

The card states what a reader needs to trust the numbers: the architecture and its parent, the OSE point if the
architecture was extracted, which data the model learned from and which split each metric was scored on (with Agora
the official dev set is a held-out test), the Agora rounds, the metrics, CPU latency and the known limitations.
"""

import os
from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import PreTrainedConfig

from .glue import get_task


def _model_cards_dir() -> Path:
    """The installed package data, else the checkout's top-level folder (editable installs do not map it)."""
    installed = Path(str(resources.files(__package__) / "model_cards"))
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "model_cards"


MODEL_CARDS_DIR = _model_cards_dir()
GLUE_CARD_TEMPLATE = MODEL_CARDS_DIR / "glue_model_card.md"

_METRIC_NAMES = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "matthews_correlation": "Matthews correlation",
    "pearson": "Pearson",
    "spearmanr": "Spearman",
}


def _architecture(config: PreTrainedConfig) -> dict[str, object]:
    """Bort's ⟨depth, heads, hidden, intermediate⟩ notation, read from any BERT-like config; where layers differ
    (`per_layer_config`), heads and intermediate list each layer's, separated by slashes (0: the sub-layer is
    skipped)."""
    if getattr(config, "is_heterogeneous", False):
        from .ose.space import layer_sizes

        sizes = layer_sizes(config)
        return {
            "model_type": config.model_type,
            "depth": config.num_hidden_layers,
            "heads": "/".join(str(n) for n in sizes["heads"]),
            "hidden": config.hidden_size,
            "intermediate": "/".join(str(n) for n in sizes["intermediate"]),
        }
    return {
        "model_type": config.model_type,
        "depth": getattr(config, "num_hidden_layers", None),
        "heads": getattr(config, "num_attention_heads", None),
        "hidden": getattr(config, "hidden_size", None),
        "intermediate": getattr(config, "intermediate_size", None),
    }


def _eval_results(results: dict, task_title: str, dataset_type: str) -> list[EvalResult]:
    task = results["task"]
    entries = []
    for split, scores in results["metrics"].items():
        if split == "dev":  # carved out of train: not an official GLUE number
            continue
        official_split = split.replace("test", "validation")
        for name, value in scores.items():
            if name == "loss":
                continue
            entries.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type=dataset_type,
                    dataset_name=f"GLUE {task_title}",
                    dataset_config=task,
                    dataset_split=official_split,
                    metric_type=name,
                    metric_name=_METRIC_NAMES.get(name, name),
                    metric_value=value,
                )
            )
    return entries


def render_model_card(
    results: dict,
    config: PreTrainedConfig,
    *,
    lora: bool = False,
    model_name: str | None = None,
    num_parameters: int | None = None,
    ose_point: str | None = None,
    data_source: str | None = None,
    comparison: dict | None = None,
    license: str | None = None,
    template_path: str | os.PathLike = GLUE_CARD_TEMPLATE,
) -> ModelCard:
    """Render the card of a model fine-tuned by `recipes/glue.py` from its `results.json` content and config.

    `data_source` names where the GLUE data came from when it was not the Hub's `nyu-mll/glue` (e.g. "local GLUE
    files (SST-2/train.tsv, dev.tsv)"); by default the files `results["data"]` lists (`recipes/glue.py --data_dir`).
    `comparison` ({"parent_score", "share", "speedup", "metric"}) adds how the model compares with its parent, for a
    student. The recipe's `results["warnings"]` (e.g. predictions collapsed to one class) are shown with the results.
    """
    task = get_task(results["task"])
    if data_source is None and isinstance(results.get("data"), dict):
        files = ", ".join(f"`{path}` ({split})" for split, path in results["data"]["files"].items())
        data_source = f"read from local files {files}, not from the Hub's nyu-mll/glue"
    task_title = task.title
    parent = results["model"]
    model_name = model_name or f"{Path(parent.rstrip('/')).name}-{task.name}{'-lora' if lora else ''}"
    card_data = ModelCardData(
        model_name=model_name,
        base_model=parent if not Path(parent).exists() else None,
        datasets=None if data_source else ["nyu-mll/glue"],
        language="en",
        license=license,
        library_name="peft" if lora else "transformers",
        pipeline_tag="text-classification",
        tags=["glue", task.name, "hf_bort", *(["agora"] if results.get("agora") else []), *(["lora"] if lora else [])],
        metrics=list(task.metrics),
        eval_results=_eval_results(results, task_title, "glue" if data_source else "nyu-mll/glue"),
    )
    if not Path(template_path).is_file():
        raise FileNotFoundError(
            f"Model card template {template_path} not found; it ships as hf_bort/model_cards/ in the wheel (from "
            "the repository's model_cards/ folder): reinstall hf-bort, or pass template_path= to use your own."
        )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=model_name,
        parent=parent,
        task=task.name,
        task_title=task_title,
        label_names=task.label_names,
        is_regression=task.is_regression,
        architecture=_architecture(config),
        num_parameters=num_parameters,
        ose_point=ose_point if ose_point is not None else getattr(config, "ose_point", None),
        data_source=data_source,
        comparison=comparison,
        lora=lora,
        results=results,
        metric_names=_METRIC_NAMES,
    )


def render_compression_card(results: dict, config: PreTrainedConfig) -> ModelCard:
    """The card of a student made by `hf_bort.compress`, from its `results.json` content and config: its
    architecture, its measured speed-up and how it was measured, how it was chosen, and its scores beside the
    parent's on rows no step saw."""
    parent = results["parent"]
    model_name = f"{Path(str(parent).rstrip('/')).name}-{results['min_speedup']:g}x"
    card_data = ModelCardData(
        model_name=model_name,
        base_model=parent if not Path(parent).exists() and "/" in parent else None,
        language="en",
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["hf_bort", "compressed", "knowledge-distillation"],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARDS_DIR / "compressed_model_card.md"),
        model_name=model_name,
        architecture=_architecture(config),
        per_layer=getattr(config, "is_heterogeneous", False),
        results=results,
    )


def save_model_card(
    output_dir: str | os.PathLike, results: dict, config: PreTrainedConfig, push_to: str | None = None, **kwargs
) -> ModelCard:
    """Write the card as `README.md` next to the saved model, and upload it to the Hub repo `push_to` if given."""
    card = render_model_card(results, config, **kwargs)
    card.save(Path(output_dir) / "README.md")
    if push_to is not None:
        card.push_to_hub(push_to)
    return card


__all__ = ["GLUE_CARD_TEMPLATE", "MODEL_CARDS_DIR", "render_compression_card", "render_model_card", "save_model_card"]
