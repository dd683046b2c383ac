"""What each Agora round did, and a plot of it."""

import os
from dataclasses import asdict, dataclass, field

from ..extras import require


@dataclass
class AgoraRound:
    """One round: the set it trained on, how its best setting did on the Agora dev set, and what it added."""

    round: int
    train_size: int
    dev_size: int
    dev_errors: int  # of the round's best setting, on the Agora dev set
    dev_metric: float  # `metric` of the round's best setting on the Agora dev set
    metric: str = "accuracy"
    setting: int = 0  # index in Θ of the round's best setting (the one whose errors were expanded)
    settings: list[dict] = field(default_factory=list)  # every setting of the round, best first
    selection_metric: float = float("nan")  # best `metric` of the round on the split that picks the model
    selected_by: str = "agora_dev"  # that split: "agora_dev" or "agora_selection"
    generated: int = 0  # variants the sampler produced (after dropping copies)
    kept: int = 0  # variants appended to the training set
    low_confidence: int = 0  # variants dropped because the teacher was below min_teacher_confidence
    labelled: int = 0  # teacher labels spent (kept + low_confidence), counted against agora_label_budget
    teacher_agreement: float = float("nan")  # share of kept rows the teacher labels like their source (NaN: no source)
    improved: bool = False  # a model of this round beat the best selection score so far
    replayed: bool = False  # the next round restarts from the best weights
    stopped: bool = False  # the run ended after this round

    def to_dict(self) -> dict:
        return asdict(self)

    def log_dict(self) -> dict[str, float]:
        """Numeric fields under an `agora/` prefix, for the Trainer's loggers."""
        return {
            f"agora/{k}": float(v)
            for k, v in asdict(self).items()
            if isinstance(v, (int, float, bool)) and not isinstance(v, str)
        }


def plot_agora_history(history: list[AgoraRound | dict], path: str | os.PathLike) -> None:
    """Write a PNG: dev errors and generated/kept examples per round (left), dev metric and agreement (right)."""
    matplotlib = require("matplotlib")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r.to_dict() if isinstance(r, AgoraRound) else dict(r) for r in history]
    if not rows:
        raise ValueError("The Agora history is empty: call train() first.")
    rounds = [r["round"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(rounds, [r["dev_errors"] for r in rows], "o-", label="dev errors")
    left.bar([x - 0.2 for x in rounds], [r["generated"] for r in rows], width=0.4, alpha=0.4, label="generated")
    left.bar([x + 0.2 for x in rounds], [r["kept"] for r in rows], width=0.4, alpha=0.6, label="kept")
    left.set_xticks(rounds)
    left.set_xlabel("round")
    left.set_ylabel("examples")
    left.legend()
    metric = rows[0].get("metric", "accuracy")
    right.plot(rounds, [r["dev_metric"] for r in rows], "o-", label=f"Agora dev {metric}")
    if any(r.get("selected_by") == "agora_selection" for r in rows):
        right.plot(rounds, [r["selection_metric"] for r in rows], "^-", label=f"selection split {metric}")
    right.plot(rounds, [r["teacher_agreement"] for r in rows], "s--", label="teacher agrees with source")
    right.set_xticks(rounds)
    right.set_xlabel("round")
    right.set_ylim(min(0.0, *(r["dev_metric"] for r in rows)), 1)
    right.legend()
    fig.suptitle("Agora rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
