"""The check's open question at MRPC >=3x: how does the one cut of the gradual run's architecture train? (README.md)

Rebuilds the cached leaderboard compress run's search (MRPC, the fine-tuned MiniLM-L6 parent of this machine, seed 0),
cuts the architecture that run chose from the parent in one step, as compress does, and gives it the leaderboard's
post-compression training (KD from the parent, 3,000 rows, 2 epochs) for each seed; prints F1 and accuracy on the
official dev set. An experiment, kept as the record of the numbers in README.md.

    python one_cut_trained.py CACHE/compress/mrpc-3x-<keys> [SEED ...]
"""

import copy
import json
import sys
import tempfile
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repository root: benchmarks/ importable

from benchmarks import leaderboard as lb  # noqa: E402
from hf_bort import CompressConfig  # noqa: E402
from hf_bort.compression.compress import compress_search  # noqa: E402
from hf_bort.ose.search import find_text_columns  # noqa: E402
from hf_bort.ose.space import Architecture, layer_sizes  # noqa: E402


folder, seeds = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]] or [0, 1, 2]
results = json.loads((folder / "results.json").read_text())
scratch = Path(tempfile.mkdtemp())
torch.set_num_threads(1)
s = lb.Settings(tasks=("mrpc",), budgets=(results["min_speedup"],))
board = lb.Leaderboard(s, folder.parents[1], scratch / "out")
data = board.task("mrpc")
arch = Architecture(**results["architecture"])
config = CompressConfig(
    output_dir=str(scratch / "compress"),
    min_speedup=results["min_speedup"],
    epsilon=s.ose_epsilon,
    interval=s.ose_interval,
    max_candidates=s.ose_max_candidates,
    search_rows=min(2000, len(data.train_rows)),
    max_length=s.length("mrpc"),
    recovery_epochs=0,
    selection_margin=lb.SELECTION_MARGIN,
    seed=0,
    show_progress=False,
)
parent = board.parent_model("mrpc", 0).eval()
columns = find_text_columns(list(data.train_rows.column_names), None, "train_dataset")
search = compress_search(parent, data.train_rows, config, board.tokenizer, text_column=[c for c in columns if c],
                         journal=False)  # fmt: skip
one_cut = lb.bert_form(search.extract(arch), board.base_config)
print("one cut", layer_sizes(search.extract(arch).config), "| the run shipped", results["layers"], flush=True)
for seed in seeds:
    model = copy.deepcopy(one_cut)
    lb.finetune(model, data, board.settings, seed, board.teacher_logits("mrpc"))
    print(json.dumps({"seed": seed, **lb.score(model, data.dev, "mrpc")}), flush=True)
