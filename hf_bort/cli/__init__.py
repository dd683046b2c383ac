"""The `hf-bort` command: one subcommand per job, each parsing one dataclass with `HfArgumentParser`.

Every option is defined once, as a dataclass field with its help (`ConvertArguments`, `ExportArguments`,
`ExtractArguments`, and `SearchDataArguments` with `OSEConfig` for `search`), the way transformers' scripts define
theirs.
"""

import argparse
import dataclasses
import typing
from collections.abc import Callable, Sequence

from transformers import HfArgumentParser

from ..errors import run_main


class CommandParser(HfArgumentParser):
    """`HfArgumentParser` that also takes positional arguments: fields with `metadata={"positional": True}`.

    `HfArgumentParser` turns every field into an option; the positional fields are left out of the dataclass it is
    given and added as plain argparse positionals, so only its public constructor is used."""

    def __init__(self, dataclass_types=(), **kwargs):
        options, positionals = [], []
        for dtype in dataclass_types:
            hints = typing.get_type_hints(dtype)
            fields = [f for f in dataclasses.fields(dtype) if f.init]
            positionals += [(f, hints[f.name]) for f in fields if f.metadata.get("positional")]
            options.append(
                dataclasses.make_dataclass(
                    dtype.__name__,
                    [(f.name, hints[f.name], _copy_field(f)) for f in fields if not f.metadata.get("positional")],
                )
            )
        super().__init__(dataclass_types=options, **kwargs)
        for field, hint in positionals:
            kind = {} if hint is str else {"type": hint}
            self.add_argument(field.name, help=field.metadata.get("help"), metavar=field.name.upper(), **kind)


def _copy_field(field: dataclasses.Field) -> dataclasses.Field:
    return dataclasses.field(default=field.default, default_factory=field.default_factory, metadata=field.metadata)


def add_dataclass_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    arguments: type,
    handler: Callable[[object], int],
    help: str,
    description: str | None = None,
) -> CommandParser:
    """A subcommand whose options are the fields of `arguments`; the handler receives a filled `arguments`."""
    parser = subparsers.add_parser(
        name,
        dataclass_types=[arguments],
        help=help,
        description=description or help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    names = [f.name for f in dataclasses.fields(arguments) if f.init]
    parser.set_defaults(func=lambda namespace: handler(arguments(**{n: getattr(namespace, n) for n in names})))
    return parser


def build_parser() -> argparse.ArgumentParser:
    from .compress import add_compress_subcommand
    from .convert import add_convert_subcommand
    from .export import add_export_subcommand
    from .extract import add_extract_subcommand
    from .search import add_search_subcommand

    parser = argparse.ArgumentParser(prog="hf-bort", description="Bort for the Hugging Face ecosystem.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    add_compress_subcommand(subparsers)
    add_convert_subcommand(subparsers)
    add_export_subcommand(subparsers)
    add_extract_subcommand(subparsers)
    add_search_subcommand(subparsers)
    return parser


def _dispatch(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; bad input ends in one line and exit status 2 (`--debug` shows the traceback)."""
    return run_main(_dispatch, "hf-bort", argv)


__all__ = ["CommandParser", "add_dataclass_command", "build_parser", "main"]
