"""`hf-bort search`: run OSE on a parent model from the command line.

The flags are the fields of two dataclasses parsed by `HfArgumentParser`: `SearchDataArguments` (the parent, the
data and the grid) and `OSEConfig` (the algorithm), so every option is defined, with its help, exactly once.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path


@dataclass
class SearchDataArguments:
    """What `hf-bort search` reads: the parent, the texts for the error estimates, and the grid below the parent."""

    model: str = field(metadata={"help": "Parent model: a local folder or a Hub id."})
    train_file: str | None = field(
        default=None, metadata={"help": "Raw text file (one paragraph a line), e.g. wiki.valid.raw."}
    )
    glue_task: str | None = field(default=None, metadata={"help": "A GLUE task (e.g. sst2) for --objective task."})
    glue_dir: str | None = field(default=None, metadata={"help": "Folder with GLUE in the original layout."})
    eval_file: str | None = field(
        default=None, metadata={"help": "Held-out raw text; each candidate's loss on it is recorded."}
    )
    max_texts: int = field(default=2000, metadata={"help": "Use at most this many training texts."})
    step: int = field(default=64, metadata={"help": "Spacing of the hidden and intermediate grids."})
    head_dims: list[int] | None = field(
        default=None,
        metadata={"help": "Widths of one head to search (BERT layout: up to the parent's; default the parent's)."},
    )
    allocation: str | None = field(
        default=None,
        metadata={
            "choices": ["uniform", "importance"],
            "help": "How a candidate's heads and FFN neurons are spread over its layers: by importance (parents of the "
            "BERT layout, the default there; the students are Bort models) or alike (every other family).",
        },
    )

    def __post_init__(self):
        if (self.train_file is None) == (self.glue_task is None):
            raise ValueError("Pass exactly one of --train_file (raw text) or --glue_task (labelled GLUE data).")
        if self.max_texts < 1:
            raise ValueError(f"--max_texts must be at least 1, got {self.max_texts}.")


def add_search_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `search` on the `hf-bort` parser; the handler is `run_search`."""
    from ..ose.ose_config import OSEConfig

    parser = subparsers.add_parser(  # the `hf-bort` parser makes its subparsers HfArgumentParsers
        "search",
        dataclass_types=(SearchDataArguments, OSEConfig),
        help="Optimal subarchitecture extraction (OSE): find the best smaller architecture of a model.",
        description="Run the OSE FPTAS over a parent's <depth, heads, hidden, intermediate> grid. Writes "
        "result.json, front.png and candidates-*.jsonl (resumable) to --output_dir.",
    )
    parser.set_defaults(func=run_search)
    return parser


def _dataclass_from_namespace(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if f.init and hasattr(args, f.name)})


def run_search(args: argparse.Namespace) -> int:
    from transformers import AutoConfig

    from ..errors import check_model_source
    from ..ose.journal import check_search_folder
    from ..ose.ose_config import OSEConfig
    from ..ose.search import OSESearch, ose_state, read_text_lines
    from ..ose.space import SearchSpace

    data = _dataclass_from_namespace(SearchDataArguments, args)
    config = _dataclass_from_namespace(OSEConfig, args)
    if config.output_dir is None:
        raise ValueError("--output_dir is required: the search writes its results and resume journal there.")
    check_search_folder(Path(config.output_dir))  # before any slow work: a user's folder is refused at once
    check_model_source(data.model, "--model")
    if data.train_file is not None:
        train = read_text_lines(data.train_file)[: data.max_texts]
    else:
        from ..glue import load_glue

        train = load_glue(data.glue_task, data.glue_dir, splits=("train",))["train"]
        train = train.select(range(min(data.max_texts, len(train))))
    evaluation = read_text_lines(data.eval_file)[: max(1, data.max_texts // 10)] if data.eval_file else None
    space = SearchSpace.from_config(
        AutoConfig.from_pretrained(data.model), step=data.step, head_dims=data.head_dims, allocation=data.allocation
    )
    search = OSESearch(data.model, config, space=space, train_dataset=train, eval_dataset=evaluation)
    result = search.run()

    if ose_state().is_main_process:
        print(f"Reused {search.reused_candidates} finished candidate(s) from {config.output_dir}.")
        output_dir = Path(config.output_dir)
        result.save(output_dir / "result.json", overwrite=True)
        result.plot(output_dir / "front.png")
        print(result)
        print(f"Best architecture: {result.best}; config: result.to_config() or {output_dir / 'result.json'}")
        if result.constraints:
            best = result.record(result.best)
            speed = f", measured {best.latency_ms:.2f} ms, {best.speedup:.2f}x the parent" if best.speedup else ""
            print(f"Constraints {result.constraints['limits']} met by the best point{speed}.")
    return 0


__all__ = ["SearchDataArguments", "add_search_subcommand", "run_search"]
