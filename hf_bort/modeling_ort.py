"""An exported Bort or BERT classifier as a model: ONNX Runtime (fp32 or int8) behind optimum's `OptimizedModel`.

`optimum.onnxruntime.ORTModelForSequenceClassification` lives in the separate `optimum-onnx` package, whose only
release (0.1.0) pins transformers < 4.58 and would downgrade this stack (transformers 5). So this class follows the
same conventions on optimum's own base class: a folder holding the graph (`model.onnx`, or `model_quantized.onnx`
for int8) beside `config.json` and the tokenizer, `from_pretrained` (a folder or a Hub repo; `export=True` exports a
PyTorch checkpoint on the fly), `save_pretrained`, `push_to_hub`, and calls that return what the PyTorch model
returns, so it runs inside `transformers.pipeline("text-classification", model=..., tokenizer=...)`.

    model = ORTModelForSequenceClassification.from_pretrained("bort-sst2-onnx")  # written by `hf-bort export`
    classifier = pipeline("text-classification", model=model, tokenizer="bort-sst2-onnx")
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedConfig
from transformers.modeling_outputs import SequenceClassifierOutput

from .errors import check_model_source, load_checkpoint
from .export import OnnxEncoder, export_onnx, quantize_onnx_int8
from .extras import require


OptimizedModel = require("optimum.modeling_base").OptimizedModel


ONNX_FILE_NAME = "model.onnx"
ONNX_INT8_FILE_NAME = "model_quantized.onnx"
# What `export_for_ort` wrote into its folder: the files an overwrite removes, and only those.
EXPORT_MANIFEST = ".hf_bort_export.json"


def _graph_files(path: Path) -> list[Path]:
    """The graph and, for models over 2 GiB, its external-data side file."""
    side = path.with_name(path.name + ".data")
    return [path, side] if side.is_file() else [path]


def _pick_file_name(folder: Path, file_name: str | None) -> str:
    if file_name is not None:
        return file_name
    candidates = sorted(p.name for p in folder.glob("*.onnx"))
    if ONNX_FILE_NAME in candidates or not candidates:
        return ONNX_FILE_NAME
    if len(candidates) > 1:
        raise ValueError(f"{folder} holds several ONNX graphs {candidates}; pass file_name= to choose one.")
    return candidates[0]


class ORTModelForSequenceClassification(OptimizedModel):
    """A sequence classifier run by ONNX Runtime on CPU, loaded and saved like optimum's ORT models.

    Args:
        model: the `OnnxEncoder` session running the graph.
        config: the PyTorch model's config (labels, `problem_type`), saved beside the graph.
        preprocessors: tokenizers saved with the model by `save_pretrained`.
    """

    auto_model_class = AutoModelForSequenceClassification
    main_input_name = "input_ids"

    def __init__(self, model: OnnxEncoder, config: PreTrainedConfig, preprocessors: list | None = None):
        super().__init__(model, config, preprocessors)
        if model.output_names != ["logits"]:
            raise ValueError(
                f"{model.path} returns {model.output_names}, not a classifier's logits: export a checkpoint with a "
                "sequence-classification head (`hf-bort export MODEL_DIR OUT_DIR --task sequence-classification`)."
            )
        width = model(torch.zeros(1, 1, dtype=torch.long)).logits.shape[-1]  # one token: the graph's own answer
        if width != config.num_labels:
            raise ValueError(
                f"{model.path} returns {width} logits per row but its config has {config.num_labels} labels "
                f"({', '.join(map(str, config.id2label.values()))}): the graph and the config come from different "
                "models, and a pipeline would name the wrong labels. Export them together again (`hf-bort export "
                "MODEL_DIR OUT_DIR --overwrite`)."
            )
        self.model_path = model.path
        self._temporary_dir = None  # holds the graph of a model exported by from_pretrained(..., export=True)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def to(self, device: str | torch.device) -> "ORTModelForSequenceClassification":
        """ONNX Runtime runs this model on CPU (as pipelines move models to their device, CPU is accepted)."""
        if torch.device(device).type != "cpu":
            raise ValueError(f"{type(self).__name__} runs on CPU with ONNX Runtime; it cannot move to {device}.")
        return self

    def can_generate(self) -> bool:
        return False

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Logits as the PyTorch model returns them; `token_type_ids` are accepted and ignored (Bort has none)."""
        return SequenceClassifierOutput(logits=self.model(input_ids, attention_mask).logits)

    def _save_pretrained(self, save_directory: str | os.PathLike) -> None:
        for source in _graph_files(self.model_path):
            destination = Path(save_directory) / source.name
            if destination.resolve() != source.resolve():
                shutil.copyfile(source, destination)

    @classmethod
    def from_pretrained(cls, model_id: str | os.PathLike, *args, **kwargs) -> "ORTModelForSequenceClassification":
        """optimum's `from_pretrained`, after naming a local folder that cannot be loaded (missing, a file, without or
        with a broken config.json) in one sentence, where optimum would say "Repo id must be in the form..."."""
        if not kwargs.get("subfolder"):  # with a subfolder, optimum reads the config there or at the top
            check_model_source(model_id, "model")
        return super().from_pretrained(model_id, *args, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        model_id: str | os.PathLike,
        config: PreTrainedConfig,
        file_name: str | None = None,
        subfolder: str = "",
        revision: str | None = None,
        cache_dir: str | None = None,
        token: bool | str | None = None,
        local_files_only: bool = False,
        num_threads: int | None = None,
        **kwargs,
    ) -> "ORTModelForSequenceClassification":
        folder = Path(model_id) / subfolder
        if folder.is_dir():
            path = folder / _pick_file_name(folder, file_name)
            if not path.is_file():
                raise FileNotFoundError(
                    f"No ONNX graph {path.name} in {folder}. Write one with `hf-bort export MODEL_DIR {folder}`, or "
                    "load a PyTorch checkpoint with from_pretrained(..., export=True)."
                )
        else:
            from huggingface_hub import hf_hub_download

            path = Path(
                hf_hub_download(
                    str(model_id),
                    file_name or ONNX_FILE_NAME,
                    subfolder=subfolder or None,
                    revision=revision,
                    cache_dir=cache_dir,
                    token=token,
                    local_files_only=local_files_only,
                )
            )
        return cls(OnnxEncoder(path, num_threads=num_threads), config)

    @classmethod
    def _export(
        cls,
        model_id: str | os.PathLike,
        config: PreTrainedConfig,
        int8: bool = False,
        num_threads: int | None = None,
        **kwargs,
    ) -> "ORTModelForSequenceClassification":
        """Export a PyTorch checkpoint (`from_pretrained(..., export=True)`) into a temporary folder and load it."""
        import hf_bort  # noqa: F401  (registers Bort with the Auto classes)

        pytorch_model = load_checkpoint(AutoModelForSequenceClassification, model_id).eval()
        temporary_dir = tempfile.TemporaryDirectory(prefix="hf_bort_ort_")
        path = export_onnx(pytorch_model, Path(temporary_dir.name) / ONNX_FILE_NAME)
        if int8:
            path = quantize_onnx_int8(path, path.with_name(ONNX_INT8_FILE_NAME))
        model = cls(OnnxEncoder(path, num_threads=num_threads), pytorch_model.config)
        model._temporary_dir = temporary_dir
        return model


def _exported_files(folder: Path) -> list[str]:
    """The files an earlier `export_for_ort` wrote into `folder`, as its manifest lists them (none without one)."""
    try:
        files = json.loads((folder / EXPORT_MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [name for name in files if isinstance(name, str) and Path(name).name == name]


def export_for_ort(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    task_class: str = "AutoModelForSequenceClassification",
    int8: bool = False,
    per_channel: bool = True,
    opset: int = 18,
    overwrite: bool = False,
) -> Path:
    """Write a folder that `ORTModelForSequenceClassification.from_pretrained` (and a pipeline) loads.

    The folder holds the graph (`model.onnx`, or `model_quantized.onnx` with `int8`), `config.json`, when `model_dir`
    has one the tokenizer, and a manifest of these files (`.hf_bort_export.json`). `overwrite` replaces an earlier
    export: every file it wrote goes, so no graph of another model stays beside the new config; a file that no export
    wrote is never replaced (the export is refused instead). Everything is written in a temporary folder first, so a
    failed export leaves the folder as it was. Returns the graph's path.
    """
    import transformers

    import hf_bort  # noqa: F401  (registers Bort with the Auto classes)

    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} is a file; pass a folder (new or empty) to export to.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{output_dir} exists and is not empty; pass overwrite=True (or --overwrite) or choose another folder."
        )
    model = load_checkpoint(getattr(transformers, task_class), model_dir, "model_dir").eval()
    earlier = _exported_files(output_dir)
    with tempfile.TemporaryDirectory(prefix="hf_bort_export_") as tmp:
        staging = Path(tmp) / "export"
        model.config.save_pretrained(staging)
        if (Path(model_dir) / "tokenizer_config.json").is_file():
            transformers.AutoTokenizer.from_pretrained(model_dir).save_pretrained(staging)
        graph = export_onnx(model, Path(tmp) / ONNX_FILE_NAME, opset=opset)
        if int8:
            graph = quantize_onnx_int8(graph, staging / ONNX_INT8_FILE_NAME, per_channel=per_channel)
        else:
            for source in _graph_files(graph):
                shutil.move(source, staging / source.name)
        written = sorted(path.name for path in staging.iterdir())
        foreign = [name for name in written if (output_dir / name).exists() and name not in earlier]
        if foreign:
            raise FileExistsError(
                f"{output_dir} holds {', '.join(foreign)}, which no earlier export wrote; they are never replaced. "
                "Move them out, or choose another folder."
            )
        for name in earlier:
            (output_dir / name).unlink(missing_ok=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        for name in written:
            shutil.move(staging / name, output_dir / name)
    manifest = {"written_by": "hf_bort export_for_ort", "model_dir": str(model_dir), "files": written}
    (output_dir / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return output_dir / (ONNX_INT8_FILE_NAME if int8 else ONNX_FILE_NAME)


__all__ = [
    "EXPORT_MANIFEST",
    "ONNX_FILE_NAME",
    "ONNX_INT8_FILE_NAME",
    "ORTModelForSequenceClassification",
    "export_for_ort",
]
