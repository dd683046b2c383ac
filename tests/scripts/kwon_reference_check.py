"""benchmarks/kwon_prune.py against Kwon et al.'s reference code, step by step, on the same model and rows.

Runs in the peer venv (`benchmarks/setup_kwon.sh`) with a checkout of github.com/WoosukKwon/retraining-free-pruning
(commit 806ac5a) that the repository does not ship (it has no license file). The reference needs an NVIDIA GPU and
cupy; here it runs on the CPU through shims: `.cuda()` and `.to("cuda")` are no-ops, and `cupyx`'s LSMR is scipy's
with cupyx's default iteration limit (5 x min(m, n)). Prints one JSON line: for each step (Fisher gradients, mask
search for the teacher and the student, rearrangement, mask tuning) whether the two agree.

    .venv-kwon/bin/python tests/scripts/kwon_reference_check.py --reference REF_DIR --model_dir PARENT \
        --data TRAIN.json --task sst2 --rows 256 --constraint 0.25
"""

import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse.linalg
import torch
import transformers


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import kwon_prune as kwon  # noqa: E402


def install_cpu_shims() -> None:
    """The reference's GPU calls, made CPU no-ops; cupy's LSMR as scipy's with cupy's iteration limit."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    original_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        args = tuple("cpu" if isinstance(a, str) and a == "cuda" else a for a in args)
        if kwargs.get("device") == "cuda":
            kwargs["device"] = "cpu"
        kwargs.pop("non_blocking", None)
        return original_to(self, *args, **kwargs)

    torch.Tensor.to = to
    cupy = types.ModuleType("cupy")
    cupy.asarray = np.asarray
    cupy.asnumpy = np.asarray
    linalg = types.ModuleType("cupyx.scipy.sparse.linalg")

    def lsmr(A, b, damp=0.0):
        return scipy.sparse.linalg.lsmr(A, b, damp=damp, maxiter=5 * min(A.shape))

    linalg.lsmr = lsmr
    sys.modules.update(
        {
            "cupy": cupy,
            "cupyx": types.ModuleType("cupyx"),
            "cupyx.scipy": types.ModuleType("cupyx.scipy"),
            "cupyx.scipy.sparse": types.ModuleType("cupyx.scipy.sparse"),
            "cupyx.scipy.sparse.linalg": linalg,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="A checkout of retraining-free-pruning (806ac5a).")
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--constraint", type=float, default=0.25)
    args = parser.parse_args()
    install_cpu_shims()
    sys.path.insert(0, args.reference)
    from prune.fisher import collect_mask_grads
    from prune.rearrange import rearrange_mask
    from prune.rescale import rescale_mask
    from prune.search import search_mac
    from utils.schedule import get_pruning_schedule

    torch.set_num_threads(1)
    transformers.set_seed(0)
    model = transformers.BertForSequenceClassification.from_pretrained(args.model_dir, attn_implementation="eager")
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    config = model.config
    data = json.loads(Path(args.data).read_text())
    index = np.random.choice(len(data["labels"]), args.rows).tolist()
    loader = kwon.batches(data, index, 32)
    seq_len = kwon.AVG_SEQ_LENGTH[args.task]

    def ones():
        return (
            torch.ones(config.num_hidden_layers, config.num_attention_heads),
            torch.ones(config.num_hidden_layers, config.intermediate_size),
        )

    ref_hg, ref_ng = collect_mask_grads(model, *ones(), kwon.fresh(loader))
    hg, ng = kwon.collect_mask_grads(model, *ones(), kwon.fresh(loader))
    teacher_c = get_pruning_schedule(target=args.constraint, num_iter=2)[0]
    report = {
        "constraint": args.constraint,
        "rows": args.rows,
        "teacher_constraint_equal": teacher_c == kwon.get_pruning_schedule(args.constraint, 2)[0],
        "grads_equal": bool(torch.equal(ref_hg, hg) and torch.equal(ref_ng, ng)),
    }
    ref_teacher = search_mac(config, ref_hg, ref_ng, seq_len, teacher_c)
    teacher = kwon.search_mac(config, hg, ng, seq_len, teacher_c)
    ref_student = search_mac(config, ref_hg, ref_ng, seq_len, args.constraint)
    student = kwon.search_mac(config, hg, ng, seq_len, args.constraint)
    report["search_equal"] = all(torch.equal(a, b) for a, b in zip(ref_teacher + ref_student, teacher + student))
    ref_head = rearrange_mask(ref_student[0].clone(), ref_hg)
    ref_neuron = rearrange_mask(ref_student[1].clone(), ref_ng)
    head = kwon.rearrange_mask(student[0], hg)
    neuron = kwon.rearrange_mask(student[1], ng)
    report["rearrange_equal"] = bool(torch.equal(ref_head, head) and torch.equal(ref_neuron, neuron))
    report["rearrange_changed"] = int((head != student[0]).sum() + (neuron != student[1]).sum())
    ref_tuned = rescale_mask(model, config, *ref_teacher, ref_head, ref_neuron, kwon.fresh(loader), True)
    tuned_head, tuned_neuron, stopped = kwon.rescale_mask(model, config, *teacher, head, neuron, loader, True)
    report["tuned_max_abs_diff"] = float(
        max((ref_tuned[0] - tuned_head).abs().max(), (ref_tuned[1] - tuned_neuron).abs().max())
    )
    report["tuning_stopped"] = stopped
    report["tuned_head_mask_range"] = [float(tuned_head[head != 0].min()), float(tuned_head[head != 0].max())]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
