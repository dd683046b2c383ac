"""`hf-bort convert`: a BERT-format masked-LM checkpoint (e.g. amazon/bort) as a Bort checkpoint folder."""

import argparse
from dataclasses import dataclass, field

from . import add_dataclass_command


@dataclass
class ConvertArguments:
    source: str = field(
        metadata={"positional": True, "help": "Hub id (e.g. amazon/bort) or local folder of a BertForMaskedLM."}
    )
    destination: str = field(metadata={"positional": True, "help": "Folder to write the Bort checkpoint to."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty destination folder."})


def _convert(args: ConvertArguments) -> int:
    from ..convert import convert_bert_checkpoint

    model = convert_bert_checkpoint(args.source, args.destination, overwrite=args.overwrite)
    size = sum(p.numel() for p in model.bort.parameters())
    print(f"Converted {args.source} -> {args.destination} (BortForMaskedLM, encoder {size:,} parameters)")
    return 0


def add_convert_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_dataclass_command(
        subparsers,
        "convert",
        ConvertArguments,
        _convert,
        help="convert a BERT-format checkpoint (e.g. amazon/bort) to BortForMaskedLM",
        description="Convert a BERT-format masked-LM checkpoint (Hub id or folder) into a Bort checkpoint folder.",
    )


__all__ = ["ConvertArguments", "add_convert_subcommand"]
