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

import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedConfig
from transformers.modeling_outputs import SequenceClassifierOutput

from .errors import readable_weights
from .export import OnnxEncoder, export_onnx, quantize_onnx_int8
from .extras import require


OptimizedModel = require("optimum.modeling_base").OptimizedModel


ONNX_FILE_NAME = "model.onnx"
ONNX_INT8_FILE_NAME = "model_quantized.onnx"


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

        pytorch_model = AutoModelForSequenceClassification.from_pretrained(model_id).eval()
        temporary_dir = tempfile.TemporaryDirectory(prefix="hf_bort_ort_")
        path = export_onnx(pytorch_model, Path(temporary_dir.name) / ONNX_FILE_NAME)
        if int8:
            path = quantize_onnx_int8(path, path.with_name(ONNX_INT8_FILE_NAME))
        model = cls(OnnxEncoder(path, num_threads=num_threads), pytorch_model.config)
        model._temporary_dir = temporary_dir
        return model


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

    The folder holds the graph (`model.onnx`, or `model_quantized.onnx` with `int8`), `config.json` and, when
    `model_dir` has one, the tokenizer. Returns the graph's path.
    """
    import transformers

    import hf_bort  # noqa: F401  (registers Bort with the Auto classes)

    output_dir = Path(output_dir)
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{output_dir} exists and is not empty; pass overwrite=True (or --overwrite) or choose another folder."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    with readable_weights(model_dir, "model_dir"):
        model = getattr(transformers, task_class).from_pretrained(model_dir).eval()
    model.config.save_pretrained(output_dir)
    if (Path(model_dir) / "tokenizer_config.json").is_file():
        transformers.AutoTokenizer.from_pretrained(model_dir).save_pretrained(output_dir)
    graph = export_onnx(model, output_dir / ONNX_FILE_NAME, opset=opset, overwrite=overwrite)
    if not int8:
        return graph
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = output_dir / ONNX_FILE_NAME
        moved = Path(tmp) / ONNX_FILE_NAME
        for source in _graph_files(fp32):
            shutil.move(source, moved.with_name(source.name))
        return quantize_onnx_int8(
            moved, output_dir / ONNX_INT8_FILE_NAME, per_channel=per_channel, overwrite=overwrite
        )


__all__ = ["ONNX_FILE_NAME", "ONNX_INT8_FILE_NAME", "ORTModelForSequenceClassification", "export_for_ort"]
