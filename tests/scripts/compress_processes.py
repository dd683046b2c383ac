"""`hf_bort.compress` on test_compress's parent and rows, as one process or under `accelerate launch`; each process
writes what its call returned as JSON (`<output>-<rank>.json`), so a test can compare ranks and process counts."""

import json
import sys

import torch
import transformers as tr
from accelerate import PartialState

from hf_bort import compress
from hf_bort.glue import load_glue
from tests.test_compress import PARENT, _config, fine_tuned_parent


def main(output: str, glue_dir: str, tokenizer_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    tokenizer = tr.AutoTokenizer.from_pretrained(tokenizer_dir)
    data = load_glue("sst2", glue_dir, splits=("train", "validation"))
    train, dev = data["train"].select(range(96)), data["validation"].select(range(48))
    parent = fine_tuned_parent(train, tokenizer, PARENT)
    config = _config(None, output_dir=out_dir, speed="flops")  # the same choice however busy the machine
    result = compress(parent, train, dev, config, tokenizer=tokenizer)
    state = PartialState(cpu=True)
    journal = sorted((result.output_dir / "ose").glob("candidates-*.jsonl"))
    records = [json.loads(line) for path in journal for line in path.read_text().splitlines() if line.strip()]
    with open(f"{output}-{state.process_index}.json", "w") as f:
        json.dump(
            {
                "num_processes": state.num_processes,
                "results": result.results,
                "errors": sorted((json.dumps(r["architecture"], sort_keys=True), r["error"]) for r in records),
            },
            f,
        )


if __name__ == "__main__":
    main(*sys.argv[1:5])
