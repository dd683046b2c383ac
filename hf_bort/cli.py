"""The `hf-bort` command line: one subcommand per job, each defined next to the code it drives."""

import argparse
from collections.abc import Sequence

from transformers import HfArgumentParser

from .errors import run_main
from .export import add_export_subcommand
from .ose.cli import add_search_subcommand


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_bert_checkpoint

    model = convert_bert_checkpoint(args.source, args.destination, overwrite=args.overwrite)
    size = sum(p.numel() for p in model.bort.parameters())
    print(f"Converted {args.source} -> {args.destination} (BortForMaskedLM, encoder {size:,} parameters)")
    return 0


def add_convert_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a BERT-format checkpoint (e.g. amazon/bort) to BortForMaskedLM",
        description="Convert a BERT-format masked-LM checkpoint (Hub id or folder) into a Bort checkpoint folder.",
    )
    parser.add_argument("source", help="Hub id (e.g. amazon/bort) or local folder of a BertForMaskedLM checkpoint")
    parser.add_argument("destination", help="folder to write the Bort checkpoint to")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty destination folder")
    parser.set_defaults(func=_convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-bort", description="Bort for the Hugging Face ecosystem.")
    # Each subparser is an HfArgumentParser, so a subcommand can take its flags from dataclasses.
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=HfArgumentParser)
    add_convert_subcommand(subparsers)
    add_export_subcommand(subparsers)
    add_search_subcommand(subparsers)
    return parser


def _dispatch(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; bad input ends in one line and exit status 2 (`--debug` shows the traceback)."""
    return run_main(_dispatch, "hf-bort", argv)


if __name__ == "__main__":
    raise SystemExit(main())
