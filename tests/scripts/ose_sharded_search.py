"""A tiny OSE search, run as one process or under `accelerate launch`; the main process writes the outcome as JSON."""

import json
import sys

import torch
import transformers as tr
from accelerate import PartialState

from hf_bort.ose import OSEConfig, OSESearch, SearchSpace, read_text_lines


def main(output: str, wikitext: str, tokenizer_dir: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = tr.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    parent = tr.BertModel(config)
    search = OSESearch(
        parent,
        OSEConfig(epsilon=0.5, interval=2, seq_len=24, batch_size=4, show_progress=False),
        space=SearchSpace.from_config(config, step=16),
        train_dataset=read_text_lines(wikitext)[:32],
        tokenizer=tr.AutoTokenizer.from_pretrained(tokenizer_dir),
    )
    result = search.run()
    state = PartialState(cpu=True)
    if state.is_main_process:
        with open(output, "w") as f:
            json.dump(
                {
                    "num_processes": state.num_processes,
                    "records": [
                        [r.architecture.as_dict(), r.error, r.params, r.inference_cost] for r in result.records
                    ],
                    "front": [a.as_dict() for a in result.front],
                    "best": result.best.as_dict(),
                },
                f,
            )


if __name__ == "__main__":
    main(*sys.argv[1:4])
