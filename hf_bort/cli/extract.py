"""`hf-bort extract`: one architecture cut out of a parent with OSE's importance ranking, saved as a model folder."""

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import check_model_source, load_checkpoint
from . import add_dataclass_command


@dataclass
class ExtractArguments:
    model: str = field(metadata={"positional": True, "help": "Parent model: local folder or Hub id (BERT layout)."})
    output_dir: Path = field(metadata={"positional": True, "help": "Folder to write the extracted model to."})
    architecture: str | None = field(
        default=None,
        metadata={
            "help": "depth,heads,hidden,intermediate of the child, e.g. 4,8,256,768, and optionally the width of one "
            "head last, e.g. 6,2,384,192,32 (heads that need not fill the hidden size: a Bort child) (or --result)."
        },
    )
    allocation: str = field(
        default="uniform",
        metadata={
            "choices": ["uniform", "importance"],
            "help": "How the child's heads and FFN neurons are spread over its layers: alike, or by importance "
            "(a Bort child with per layer sizes). With --result, the per layer sizes the search evaluated are used.",
        },
    )
    result: Path | None = field(
        default=None, metadata={"help": "An OSE result.json (hf-bort search): extract its chosen architecture."}
    )
    importance: str = field(
        default="magnitude",
        metadata={
            "choices": ["magnitude", "gradient"],
            "help": "How weights are ranked: |w|, or |w * dL/dw| over --train_file batches.",
        },
    )
    train_file: Path | None = field(
        default=None, metadata={"help": "Raw text (one paragraph a line) for --importance gradient."}
    )
    seq_len: int = field(default=64, metadata={"help": "Tokens per text for gradient importance."})
    as_bort: bool = field(
        default=False, metadata={"help": "Save a Bort model (else the parent's own class with a smaller config)."}
    )
    seed: int = field(default=0, metadata={"help": "Seeds the small random values of widened head dimensions."})
    overwrite: bool = field(default=False, metadata={"help": "Write into a non-empty output folder."})


def _architecture(args: ExtractArguments):
    """The child and how its layers are sized: (architecture, allocation) from --architecture or a search's result."""
    from ..ose import Architecture, OSEResult

    if (args.architecture is None) == (args.result is None):
        raise ValueError("Pass exactly one of --architecture D,A,H,I and --result result.json to choose the child.")
    if args.result is not None:
        if not args.result.is_file():
            raise FileNotFoundError(f"--result {args.result} does not exist; pass the result.json of hf-bort search.")
        result = OSEResult.load(args.result)
        return result.best, result.record(result.best).allocation or args.allocation
    parts = args.architecture.replace(" ", "").split(",")
    if len(parts) not in (4, 5) or not all(p.isdigit() for p in parts):
        raise ValueError(
            f"--architecture {args.architecture!r} must be four integers depth,heads,hidden,intermediate, or five "
            "with the width of one head last."
        )
    return Architecture(*map(int, parts)), args.allocation


def run_extract(args: ExtractArguments) -> int:
    """Handler of `hf-bort extract`: load the parent, extract the child, save it with the parent's tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    from ..ose import extract_subnetwork, read_text_lines

    arch, allocation = _architecture(args)
    check_model_source(args.model, "parent model")
    if args.output_dir.is_dir() and any(args.output_dir.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{args.output_dir} is not empty; pass --overwrite or choose another folder.")
    if args.importance == "gradient" and args.train_file is None:
        raise ValueError("--importance gradient needs --train_file: text whose batches give the gradients.")
    parent = load_checkpoint(AutoModel, args.model, "parent model")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    data = None
    if args.importance == "gradient":
        texts = read_text_lines(args.train_file)[:32]
        data = [
            tokenizer(texts[i : i + 8], truncation=True, max_length=args.seq_len, padding=True, return_tensors="pt")
            for i in range(0, len(texts), 8)
        ]
    child = extract_subnetwork(
        parent,
        arch,
        as_bort=args.as_bort,
        allocation=allocation,
        importance=args.importance,
        data=data,
        seed=args.seed,
    )
    child.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    size = sum(p.numel() for p in child.parameters())
    print(f"Extracted {arch} ({type(child).__name__}, {size:,} parameters) from {args.model} -> {args.output_dir}")
    return 0


def add_extract_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_dataclass_command(
        subparsers,
        "extract",
        ExtractArguments,
        run_extract,
        help="Extract one architecture from a parent with OSE's weight importance and save it.",
        description=(
            "Cut <depth, heads, hidden, intermediate> out of a parent model, keeping its most important layers, "
            "heads and neurons (hf_bort.extract_subnetwork), and save the child with the parent's tokenizer."
        ),
    )


__all__ = ["ExtractArguments", "add_extract_subcommand", "run_extract"]
