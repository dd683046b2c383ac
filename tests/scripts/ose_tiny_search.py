"""A tiny OSE search into a given folder, each candidate slowed down so that concurrent runs overlap.

Usage: ose_tiny_search.py OUTPUT_DIR TOKENIZER_DIR WIKITEXT_FILE REPORT_JSON [DELAY_SECONDS]
Writes REPORT_JSON: the candidates this process evaluated itself, and the result's records, front and best.
"""

import json
import sys
import time

import torch
import transformers as tr

from hf_bort.ose import OSEConfig, OSESearch, SearchSpace, read_text_lines


TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def main(output_dir: str, tokenizer_dir: str, wikitext: str, report: str, delay: str = "0.4") -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = tr.BertConfig(
        **TINY, max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    parent = tr.BertModel(config).eval()
    evaluated = []
    evaluate = OSESearch._evaluate

    def slow_evaluate(self, arch, *args, **kwargs):
        evaluated.append(arch.as_dict())
        time.sleep(float(delay))
        return evaluate(self, arch, *args, **kwargs)

    OSESearch._evaluate = slow_evaluate
    search = OSESearch(
        parent,
        OSEConfig(epsilon=1.0, interval=2, seq_len=16, batch_size=4, show_progress=False, output_dir=output_dir),
        space=SearchSpace.from_config(config, step=16),
        train_dataset=read_text_lines(wikitext)[:16],
        tokenizer=tr.AutoTokenizer.from_pretrained(tokenizer_dir),
    )
    result = search.run()
    with open(report, "w") as f:
        json.dump(
            {
                "evaluated": evaluated,
                "records": [[r.architecture.as_dict(), r.error] for r in result.records],
                "front": [a.as_dict() for a in result.front],
                "best": result.best.as_dict(),
            },
            f,
        )


if __name__ == "__main__":
    main(*sys.argv[1:6])
