"""What each Agora round did, and a plot of it."""

import os
from dataclasses import asdict, dataclass

from ..extras import require


@dataclass
class AgoraRound:
    """One round: the set it trained on, how it did on the Agora dev set, and what it added for the next round."""

    round: int
    train_size: int
    dev_size: int
    dev_errors: int
    dev_metric: float  # accuracy on the Agora dev set
    generated: int = 0  # variants the sampler produced (after dropping copies)
    kept: int = 0  # variants appended to the training set
    teacher_agreement: float = float("nan")  # share of kept variants the teacher labels like their source
    improved: bool = False
    replayed: bool = False  # the next round restarts from the best weights

    def to_dict(self) -> dict:
        return asdict(self)

    def log_dict(self) -> dict[str, float]:
        """Numeric fields under an `agora/` prefix, for the Trainer's loggers."""
        return {f"agora/{k}": float(v) for k, v in asdict(self).items()}


def plot_agora_history(history: list[AgoraRound | dict], path: str | os.PathLike) -> None:
    """Write a PNG: dev errors and generated/kept examples per round (left), dev accuracy and agreement (right)."""
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
    right.plot(rounds, [r["dev_metric"] for r in rows], "o-", label="dev accuracy")
    right.plot(rounds, [r["teacher_agreement"] for r in rows], "s--", label="teacher agrees with source")
    right.set_xticks(rounds)
    right.set_xlabel("round")
    right.set_ylim(0, 1)
    right.legend()
    fig.suptitle("Agora rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
