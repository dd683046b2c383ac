"""`hf-bort export`: a saved Bort/BERT model as ONNX, a folder the ORT model class loads or a bare graph file."""

import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import check_model_source, load_checkpoint
from ..export import OnnxEncoder, check_opset, export_onnx, quantize_onnx_int8, refuse_overwrite
from . import add_dataclass_command


# --task -> the Auto class that loads that head
_TASK_CLASSES = {
    "base": "AutoModel",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "masked-lm": "AutoModelForMaskedLM",
}


@dataclass
class ExportArguments:
    model_dir: Path = field(metadata={"positional": True, "help": "A folder written by save_pretrained."})
    output: Path = field(
        metadata={"positional": True, "help": "The folder (or, ending in .onnx, the single graph file) to write."}
    )
    task: str = field(
        default="auto",
        metadata={
            "choices": ["auto", *_TASK_CLASSES],
            "help": "Which head to export; 'auto' follows the checkpoint's `architectures`.",
        },
    )
    int8: bool = field(default=False, metadata={"help": "Write a dynamically int8-quantized model."})
    per_tensor: bool = field(default=False, metadata={"help": "With --int8: one weight scale per tensor."})
    opset: int = field(default=18, metadata={"help": "ONNX opset."})
    overwrite: bool = field(default=False, metadata={"help": "Replace OUTPUT if it exists."})


def _infer_task(model_dir: Path) -> str:
    """The head named in the checkpoint's `architectures`, else the bare encoder."""
    from transformers import AutoConfig

    suffixes = {
        "ForSequenceClassification": "sequence-classification",
        "ForTokenClassification": "token-classification",
        "ForMaskedLM": "masked-lm",
    }
    for architecture in AutoConfig.from_pretrained(model_dir).architectures or []:
        for suffix, task in suffixes.items():
            if architecture.endswith(suffix):
                return task
    return "base"


def run_export(args: ExportArguments) -> int:
    """Handler of `hf-bort export`: load, export (and quantize), then check the file runs."""
    import transformers

    import hf_bort  # noqa: F401  (registers Bort with the Auto classes)

    check_model_source(args.model_dir, "model_dir")
    check_opset(args.opset)
    task = _infer_task(args.model_dir) if args.task == "auto" else args.task
    if args.output.suffix != ".onnx":
        from ..modeling_ort import export_for_ort

        graph = export_for_ort(
            args.model_dir,
            args.output,
            task_class=_TASK_CLASSES[task],
            int8=args.int8,
            per_channel=not args.per_tensor,
            opset=args.opset,
            overwrite=args.overwrite,
        )
        print(
            f"Wrote {args.output}/ ({task}, {'int8' if args.int8 else 'fp32'} graph {graph.name}, config, tokenizer)."
        )
        return 0
    refuse_overwrite(args.output, args.overwrite)
    model = load_checkpoint(getattr(transformers, _TASK_CLASSES[task]), args.model_dir, "model_dir").eval()
    if args.int8:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(model, Path(tmp) / "model.onnx", opset=args.opset)
            quantize_onnx_int8(fp32, args.output, per_channel=not args.per_tensor, overwrite=args.overwrite)
    else:
        export_onnx(model, args.output, opset=args.opset, overwrite=args.overwrite)
    encoder = OnnxEncoder(args.output)
    print(f"Wrote {args.output} ({task}, {'int8' if args.int8 else 'fp32'}, outputs {encoder.output_names}).")
    return 0


def add_export_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_dataclass_command(
        subparsers,
        "export",
        ExportArguments,
        run_export,
        help="Export a Bort or BERT checkpoint to ONNX (optionally int8) for fast CPU inference.",
        description=(
            "Export a saved Bort/BERT model to ONNX with dynamic batch and sequence axes. OUTPUT a folder: the graph, "
            "config and tokenizer, loaded by hf_bort.ORTModelForSequenceClassification.from_pretrained (and usable "
            "in transformers.pipeline); OUTPUT a .onnx file: the graph alone, run by hf_bort.export.OnnxEncoder."
        ),
    )


__all__ = ["ExportArguments", "add_export_subcommand", "run_export"]
