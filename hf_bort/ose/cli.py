"""`hf-bort search`: run OSE on a parent model from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_search_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `search` on the `hf-bort` parser; the handler is `run_search`."""
    parser = subparsers.add_parser(
        "search",
        help="Optimal subarchitecture extraction (OSE): find the best smaller architecture of a model.",
        description="Run the OSE FPTAS over a parent's <depth, heads, hidden, intermediate> grid. Writes "
        "result.json, front.png and candidates-*.jsonl (resumable) to --output-dir.",
    )
    parser.add_argument("--model", required=True, help="Parent model: local folder or Hub id (BERT layout).")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--train-file", type=Path, help="Raw text file (one paragraph a line), e.g. wiki.valid.raw.")
    data.add_argument("--glue-task", help="A GLUE task (e.g. sst2) for --objective task; see --glue-dir.")
    parser.add_argument("--eval-file", type=Path, help="Held-out raw text; each candidate's loss on it is recorded.")
    parser.add_argument("--glue-dir", type=Path, help="Folder with GLUE in the original layout (else the Hub).")
    parser.add_argument("--max-texts", type=int, default=2000, help="Use at most this many training texts.")
    parser.add_argument("--objective", choices=("distill", "task"), default="distill")
    parser.add_argument("--epsilon", type=float, default=0.1, help="FPTAS ε in (0, 1]: smaller keeps more candidates.")
    parser.add_argument("--interval", type=int, default=5, help="s: final steps averaged into the error estimate.")
    parser.add_argument("--max-steps", type=int, help="Cap on the training budget interval * ceil(1/ε).")
    parser.add_argument(
        "--max-candidates", type=int, help="Evaluate at most this many (the cheapest) kept candidates."
    )
    parser.add_argument("--step", type=int, default=64, help="Spacing of the hidden and intermediate grids.")
    parser.add_argument("--max-params", type=float, help="Keep candidates with at most this many parameters.")
    parser.add_argument("--inference-cost", choices=("flops", "latency"), default="flops")
    parser.add_argument("--importance", choices=("magnitude", "gradient"), default="magnitude")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="For the candidates during the short runs.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, required=True, help="Results; rerunning with it resumes.")
    parser.set_defaults(func=run_search)
    return parser


def run_search(args: argparse.Namespace) -> int:
    from transformers import AutoConfig

    from .search import OSESearch, read_text_lines
    from .space import SearchSpace

    if args.train_file is not None:
        train = read_text_lines(args.train_file)[: args.max_texts]
    else:
        from ..glue import load_glue

        train = load_glue(args.glue_task, args.glue_dir, splits=("train",))["train"]
        train = train.select(range(min(args.max_texts, len(train))))
    evaluation = read_text_lines(args.eval_file)[: max(1, args.max_texts // 10)] if args.eval_file else None
    space = SearchSpace.from_config(AutoConfig.from_pretrained(args.model), step=args.step, max_params=args.max_params)
    search = OSESearch(
        args.model,
        space,
        epsilon=args.epsilon,
        interval=args.interval,
        train_dataset=train,
        eval_dataset=evaluation,
        objective=args.objective,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_steps=args.max_steps,
        inference_cost=args.inference_cost,
        importance=args.importance,
        seed=args.seed,
        output_dir=args.output_dir,
        max_candidates=args.max_candidates,
    )
    result = search.run()
    from accelerate import PartialState

    if PartialState(cpu=True).is_main_process:
        result.save(args.output_dir / "result.json", overwrite=True)
        result.plot(args.output_dir / "front.png")
        print(result)
        print(f"Best architecture: {result.best}; config: result.to_config() or {args.output_dir / 'result.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m hf_bort.ose.cli search ...`, for use before the `hf-bort` console script wires it in."""
    parser = argparse.ArgumentParser(prog="hf-bort")
    add_search_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
__all__ = ["add_search_subcommand", "main", "run_search"]
