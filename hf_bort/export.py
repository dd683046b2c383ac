"""Fast CPU inference: ONNX export, ONNX Runtime sessions and int8 dynamic quantization.

Bort's speed claim is about CPU inference, where a model this small is bound by GEMMs and per-op overhead.
This module gives the levers that matter there, for Bort and BERT models alike:

- `export_onnx`: `torch.onnx` (dynamo exporter) with dynamic batch and sequence axes; the model's
  data-dependent input checks are skipped under export (see `modeling_bort._is_tracing`).
- `compile_for_cpu`: `torch.compile` with Inductor weight freezing (pre-packed oneDNN GEMMs).
- `OnnxEncoder`: an ONNX Runtime session with full graph optimisations that takes the same inputs as the
  PyTorch model, validates them the same way and returns a `ModelOutput`.
- `quantize_dynamic_int8` (PyTorch, `nn.Linear` -> dynamic int8) and `quantize_onnx_int8` (ONNX Runtime
  `MatMul` -> `MatMulInteger`): int8 weights, activations quantized per batch at run time, no calibration.

`optimum-onnx` would do the export too, but pins transformers < 4.58, so export goes through `torch.onnx`.
"""

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.utils import ModelOutput

from .errors import check_input_file


INPUT_NAMES = ("input_ids", "attention_mask")
MIN_OPSET = 17  # the first opset with LayerNormalization
_METADATA_PREFIX = "hf_bort."
# A single .onnx file is a protobuf, capped at 2 GiB; larger models keep their weights in a side file.
_SINGLE_FILE_LIMIT_BYTES = 1_800_000_000


@dataclass
class OnnxModelOutput(ModelOutput):
    """What an exported model returns: the encoder's hidden states or a head's logits."""

    last_hidden_state: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class _ExportWrapper(nn.Module):
    """Fixes the exported signature to `(input_ids, attention_mask) -> main output` for every architecture."""

    def __init__(self, model: nn.Module, output_name: str):
        super().__init__()
        self.model = model
        self.output_name = output_name

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)[self.output_name]


def refuse_overwrite(path: Path, overwrite: bool) -> None:
    """An output file may replace an earlier file only when asked to, and never a folder or a path below a file."""
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder; pass the path of the file to write (e.g. {path / 'model.onnx'})."
        )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (or --overwrite) or choose another path.")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(f"Cannot write {path}: {blocking} is a file, not a folder; choose another path.")


def check_opset(opset: int) -> None:
    """The opsets this exporter really writes: below 17 ONNX has no LayerNormalization, and torch.onnx silently
    falls back to 18; above the installed onnx package's newest opset nothing can read the file."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset {opset!r} is not supported: export_onnx writes opsets {MIN_OPSET} to {newest} (default 18)."
        )


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Export and quantize in eval mode (no dropout) without changing the caller's model for good."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    opset: int = 18,
    optimize: bool = True,
    overwrite: bool = False,
) -> Path:
    """Export a Bort or BERT model (bare encoder or a head) to ONNX with dynamic batch and sequence axes.

    The graph takes `input_ids` and `attention_mask` (int64, shape `(batch, sequence)`) and returns the model's
    main output, named `last_hidden_state` for encoders and `logits` for heads. The config's vocabulary size and
    maximum length are stored in the file's metadata so `OnnxEncoder` can reject bad inputs with a clear error.
    `optimize` runs the exporter's graph optimiser (constant folding, dead code removal); ONNX Runtime applies
    its own fusions when the session is created.
    """
    path = Path(path)
    check_opset(opset)
    refuse_overwrite(path, overwrite)
    config = model.config
    max_length = int(config.max_position_embeddings)
    example_length = min(8, max_length)
    input_ids = torch.arange(2 * example_length, dtype=torch.long).reshape(2, example_length) % config.vocab_size
    attention_mask = torch.ones_like(input_ids)
    with _eval_mode(model), torch.no_grad():
        output_name = next(iter(model(input_ids=input_ids, attention_mask=attention_mask).keys()))
        wrapper = _ExportWrapper(model, output_name).eval()
        batch = torch.export.Dim("batch", min=1)
        sequence = torch.export.Dim("sequence", min=1, max=max_length)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                (input_ids, attention_mask),
                input_names=list(INPUT_NAMES),
                output_names=[output_name],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUT_NAMES},
                optimize=optimize,
            )
    written = program.model.opset_imports.get("", opset)
    if written != opset:
        raise ValueError(f"torch.onnx wrote opset {written} where opset {opset} was asked for; nothing was saved.")
    program.model.metadata_props.update(
        {
            f"{_METADATA_PREFIX}architecture": type(model).__name__,
            f"{_METADATA_PREFIX}model_type": str(config.model_type),
            f"{_METADATA_PREFIX}vocab_size": str(config.vocab_size),
            f"{_METADATA_PREFIX}max_position_embeddings": str(max_length),
        }
    )
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=n_bytes > _SINGLE_FILE_LIMIT_BYTES)
    return path


def quantize_dynamic_int8(model: nn.Module, *, per_channel: bool = True) -> nn.Module:
    """A copy of `model` whose `nn.Linear` layers run int8 GEMMs (weights int8, activations quantized per call).

    The input model is left untouched. Embeddings and LayerNorms stay fp32, as in `quantize_onnx_int8`.
    Per-channel weight scales are the default: on fine-tuned MiniLM / SST-2 dev they cost 0.6 accuracy points
    where per-tensor scales cost 1.4 (benchmarks/int8_accuracy.py), at the same speed.
    """
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    with _eval_mode(model):
        quantized = copy.deepcopy(model)
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao points users to torchao; its eager API still does this job.
        return torch.ao.quantization.quantize_dynamic(quantized, {nn.Linear: qconfig}, dtype=torch.qint8)


class _FrozenCompiled(nn.Module):
    """Calls a `torch.compile`d model with Inductor's weight freezing on, so every (re)compilation freezes.

    Freezing is read from Inductor's global config when a graph compiles (passing it through `torch.compile`'s
    `options` did not enable it here), and compilation happens lazily at call time: hence the patch per call.
    """

    def __init__(self, model: nn.Module, dynamic: bool):
        super().__init__()
        self.model = model
        self.__dict__["_compiled"] = torch.compile(model, dynamic=dynamic)  # not a submodule: no duplicate weights

    @property
    def config(self):
        return self.model.config

    def forward(self, *args, **kwargs):
        from torch._inductor import config

        with config.patch(freezing=True):
            return self._compiled(*args, **kwargs)


def compile_for_cpu(model: nn.Module, *, dynamic: bool = True) -> nn.Module:
    """`torch.compile` set up for CPU inference: Inductor with weight freezing.

    Freezing turns the weights into constants, which lets Inductor pre-pack them for oneDNN GEMMs and fold
    them into fused kernels; on CPU that is where compile's gain comes from (about 2x for Bort at 8x128 on one
    core here, where plain `torch.compile` gains ~5%). It applies under `torch.no_grad()`/`torch.inference_mode()`,
    and the first call per new shape class compiles (tens of seconds on a small CPU).
    """
    return _FrozenCompiled(model.eval(), dynamic)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs a pre-processing hint on the root logger at every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx_int8(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    per_channel: bool = True,
    overwrite: bool = False,
) -> Path:
    """Dynamic int8 quantization of an exported model's MatMuls with ONNX Runtime; returns `destination`.

    Per-channel weight scales are the default, as in `quantize_dynamic_int8` (same speed, smaller accuracy cost).
    Weights keep 7 bits (ONNX Runtime's `reduce_range`): on x86 CPUs without VNNI its int8 GEMM adds pairs of
    products in 16 bits and saturates. On an AVX2-only AMD EPYC, 8-bit weights put a tiny Bort's logits 12% (of the
    largest) away from fp32, and 7-bit weights kept them within the tests' 5%. The file may run on any CPU, so the
    safe choice is the one made here.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = check_input_file(source, "ONNX model", "export one first with hf_bort.export_onnx(model, path).")
    destination = Path(destination)
    refuse_overwrite(destination, overwrite)
    destination.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(source)
    # The quantizer rewrites Gemm as MatMul with a transposed weight; the exporter's recorded shapes for that
    # weight would then contradict shape inference, so let the quantizer infer every shape afresh.
    model.graph.ClearField("value_info")
    with _quiet_root_logger():
        quantize_dynamic(
            model,
            destination,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=True,
            op_types_to_quantize=["MatMul"],
            use_external_data_format=source.with_name(source.name + ".data").exists(),
        )
    return destination


class OnnxEncoder:
    """Runs an exported model with ONNX Runtime and returns outputs like the PyTorch model.

    Args:
        path: the `.onnx` file written by `export_onnx` (or `quantize_onnx_int8`).
        num_threads: intra-op threads; `None` lets ONNX Runtime use every core.
        optimization_level: ONNX Runtime graph optimisations, one of "disable", "basic", "extended", "all".
    """

    _LEVELS = ("disable", "basic", "extended", "all")

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None, optimization_level: str = "all"):
        import onnxruntime as ort

        self.path = check_input_file(
            path,
            "ONNX model",
            "pass the .onnx file written by hf_bort.export_onnx(model, path) or `hf-bort export MODEL_DIR OUT.onnx` "
            "(a folder written by `hf-bort export MODEL_DIR OUT_DIR` loads with ORTModelForSequenceClassification).",
        )
        if optimization_level not in self._LEVELS:
            raise ValueError(f"optimization_level must be one of {self._LEVELS}, got {optimization_level!r}.")
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization_level]
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises its own pybind types (InvalidProtobuf, Fail, ...).
            raise ValueError(
                f"{self.path} is not a readable ONNX model ({type(error).__name__}: {error}). Re-export it with "
                "hf_bort.export_onnx(model, path, overwrite=True) or `hf-bort export ... --overwrite`."
            ) from error
        inputs = [i.name for i in self.session.get_inputs()]
        if tuple(inputs) != INPUT_NAMES:
            raise ValueError(
                f"{self.path} takes inputs {inputs}, not {list(INPUT_NAMES)}: export it with export_onnx."
            )
        self.output_names = [o.name for o in self.session.get_outputs()]
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k[len(_METADATA_PREFIX) :]: v for k, v in metadata.items() if k.startswith(_METADATA_PREFIX)}

    def _check_inputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> None:
        """The same checks as `BortModel`, so a wrong tokenizer fails with a message instead of an ORT trace."""
        if input_ids.ndim != 2:
            raise ValueError(f"Expected input_ids of shape (batch, sequence); got {input_ids.shape}.")
        if 0 in input_ids.shape:
            raise ValueError(
                f"The inputs are empty (shape {input_ids.shape}); pass at least one sequence of at least one token."
            )
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask has shape {attention_mask.shape} but input_ids have shape {input_ids.shape}; "
                "pass the mask the tokenizer returned with these input_ids."
            )
        max_length = int(self.metadata.get("max_position_embeddings", 0)) or None
        if max_length is not None and input_ids.shape[1] > max_length:
            raise ValueError(
                f"Sequence length {input_ids.shape[1]} exceeds max_position_embeddings={max_length}. "
                "Truncate the inputs (e.g. tokenizer(..., truncation=True, max_length=...))."
            )
        vocab_size = int(self.metadata.get("vocab_size", 0)) or None
        if vocab_size is not None and input_ids.size and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
            raise ValueError(
                f"input_ids contain token ids outside [0, {vocab_size}). The tokenizer does not match this model's "
                "vocabulary; use the checkpoint's own tokenizer."
            )

    def __call__(
        self,
        input_ids: torch.Tensor | np.ndarray,
        attention_mask: torch.Tensor | np.ndarray | None = None,
        **kwargs,
    ) -> OnnxModelOutput:
        """Run the session; `token_type_ids` and other tokenizer extras are accepted and ignored, as in Bort."""
        ids = np.asarray(input_ids.cpu() if isinstance(input_ids, torch.Tensor) else input_ids)
        if ids.dtype.kind not in "iu":  # casting would silently truncate 3.7 to token 3, where BortModel refuses
            raise ValueError(
                f"input_ids must hold integer token ids (int64), got dtype {ids.dtype}. Pass the ids the tokenizer "
                "returned."
            )
        ids = ids.astype(np.int64, copy=False)
        if attention_mask is None:
            mask = np.ones_like(ids)
        else:
            mask = np.asarray(
                attention_mask.cpu() if isinstance(attention_mask, torch.Tensor) else attention_mask, dtype=np.int64
            )
        self._check_inputs(ids, mask)
        outputs = self.session.run(self.output_names, {"input_ids": ids, "attention_mask": mask})
        return OnnxModelOutput(**{name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)})


__all__ = [
    "OnnxEncoder",
    "OnnxModelOutput",
    "check_opset",
    "compile_for_cpu",
    "export_onnx",
    "quantize_dynamic_int8",
    "quantize_onnx_int8",
    "refuse_overwrite",
]
