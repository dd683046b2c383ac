"""TextPruner's structured pruning (attention heads + FFN neurons) of a fine-tuned BERT classifier, in its own venv.

TextPruner 1.1.post2 calls `BertModel.prune_heads`, which transformers 5 removed, so it runs in a virtual environment
pinned to versions it supports; `leaderboard.py` calls this script there and reads back the pruned weights
(`model.safetensors`) and the real per-layer shapes (`shapes.json`), which it rebuilds module by module.

Venv: `make peers` (`benchmarks/setup_peers.sh`, which records the pins) builds `.venv-textpruner/` from the package
registry on a fresh clone.

Run (what leaderboard.py runs):

    .venv-textpruner/bin/python benchmarks/textpruner_prune.py --model_dir PARENT --data TRAIN.json \
        --heads 4 --ffn 384 --output_dir OUT

Importance: TextPruner's own (the task loss's gradient-based head and neuron scores on the training rows),
iterative pruning to `--heads` heads per layer and `--ffn` FFN neurons per layer.
"""

import argparse
import json
from pathlib import Path

import textpruner
import torch
import transformers
from safetensors.torch import save_file
from textpruner import GeneralConfig, TransformerPruner, TransformerPruningConfig
from transformers import BertForSequenceClassification


def batches(data: dict, batch_size: int):
    rows = len(data["labels"])
    for start in range(0, rows, batch_size):
        index = range(start, min(rows, start + batch_size))
        length = max(len(data["input_ids"][i]) for i in index)
        ids = torch.zeros(len(index), length, dtype=torch.long)
        types, mask = torch.zeros_like(ids), torch.zeros_like(ids)
        for row, i in enumerate(index):
            n = len(data["input_ids"][i])
            ids[row, :n] = torch.tensor(data["input_ids"][i])
            types[row, :n] = torch.tensor(data["token_type_ids"][i])
            mask[row, :n] = 1
        yield {
            "input_ids": ids,
            "token_type_ids": types,
            "attention_mask": mask,
            "labels": torch.tensor([data["labels"][i] for i in index]),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data", required=True, help="JSON with input_ids, token_type_ids, labels lists.")
    parser.add_argument("--heads", type=int, required=True, help="Target attention heads per layer.")
    parser.add_argument("--ffn", type=int, required=True, help="Target FFN size per layer.")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--rows", type=int, default=1024, help="Training rows used for the importance scores.")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = BertForSequenceClassification.from_pretrained(args.model_dir).eval()
    data = json.loads(Path(args.data).read_text())
    data = {k: v[: args.rows] for k, v in data.items()}
    pruner = TransformerPruner(
        model,
        transformer_pruning_config=TransformerPruningConfig(
            target_ffn_size=args.ffn,
            target_num_of_heads=args.heads,
            pruning_method="iterative",
            n_iters=args.iterations,
        ),
        general_config=GeneralConfig(use_device="cpu", output_dir=str(out / "textpruner")),
    )
    pruner.prune(dataloader=list(batches(data, 32)), save_model=False)
    # Read the shapes from the weights: TextPruner swaps in smaller Parameters without updating `out_features`.
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    layers = []
    for layer in model.bert.encoder.layer:
        heads = layer.attention.self.query.weight.shape[0] // head_dim
        layers.append(
            {
                "heads": heads,
                "head_dim": head_dim if heads else 0,
                "intermediate": layer.intermediate.dense.weight.shape[0],
            }
        )
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    save_file(state, out / "model.safetensors")
    info = {
        "tool": f"textpruner {textpruner.__version__}",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "importance_rows": len(data["labels"]),
        "iterations": args.iterations,
    }
    (out / "shapes.json").write_text(
        json.dumps({"hidden": model.config.hidden_size, "layers": layers, "info": info}, indent=1)
    )


if __name__ == "__main__":
    main()
