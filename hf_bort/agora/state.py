"""`AgoraState`: where an Agora run stands, saved as JSON in every checkpoint (like transformers' `TrainerState`).

The file carries `format_version`. Version 1 (hf_bort before `AgoraState`) wrote the same run keys by hand without
a version; it is read into today's state (the fields it did not have get their defaults). A newer version, an
unknown version or a file that lacks a key its version must have is refused with a sentence naming the file and what
to do, never half-read.
"""

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .history import AgoraRound


AGORA_STATE_VERSION = 2
# The keys version 1 wrote (all of them, always); a version-1 file without one of them was not written by Agora.
_V1_KEYS = frozenset(
    ("round", "position", "remaining", "results", "round_best", "improved", "best", "stale", "total_steps",
     "loss_sum", "history", "weights", "generated_rows", "settings")
)  # fmt: skip


def _no_best() -> dict[str, Any]:
    return {"metric": None, "round": 0, "setting": 0, "wrong": []}


@dataclass
class AgoraState:
    """The run's position and bookkeeping; `AgoraTrainer.agora_state` holds it and every checkpoint saves it.

    `round`/`position`/`remaining`: the current round, the rank of the setting training now, and the settings of Θ
    still in the race. `results`: this round's scored settings; `round_best`: the best of them so far (with its dev
    errors); `best`: the model the run ends on so far (`agora_selection_tolerance`), with the peak selection score
    and the peak model's selection predictions (`peak_metric`, `peak_predictions`) that later rounds are compared
    with. `stale`: rounds in a row without a new peak. `total_steps`/`loss_sum`: optimisation steps (and summed
    loss) of every finished setting. `labels_spent`: teacher labels spent on generated rows (what
    `agora_label_budget` counts). `history`: one `AgoraRound` per finished
    round. `teacher_report`: the gate's numbers (before round one, and the comparison with the student after it).
    `weights`, `generated_rows`, `settings`: what the checkpoint holds beside this file, checked on load.
    """

    round: int = 1
    position: int = 0
    remaining: list[int] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    round_best: dict | None = None
    improved: bool = False
    best: dict = field(default_factory=_no_best)
    stale: int = 0
    total_steps: int = 0
    loss_sum: float = 0.0
    labels_spent: int = 0
    history: list[AgoraRound] = field(default_factory=list)
    teacher_report: dict = field(default_factory=dict)
    weights: list[str] = field(default_factory=list)
    generated_rows: int = 0
    settings: list[dict] = field(default_factory=list)
    format_version: int = AGORA_STATE_VERSION

    @classmethod
    def fresh(cls, num_settings: int) -> "AgoraState":
        """The state before round one: every setting of Θ remains."""
        return cls(remaining=list(range(num_settings)))

    def to_dict(self) -> dict[str, Any]:
        state = dataclasses.asdict(self)
        state["history"] = [r.to_dict() for r in self.history]
        return state

    def save_to_json(self, path: str | os.PathLike) -> None:
        """Write atomically (a temporary file, then a rename): a checkpoint holding this file is complete."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)

    @classmethod
    def load_from_json(cls, path: str | os.PathLike) -> "AgoraState":
        """Read a state file of any version this hf_bort knows; refuse anything else with what to do."""
        path = Path(path)
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(
                f"{path} is not valid JSON: the checkpoint is damaged; resume from another one."
            ) from None
        if not isinstance(state, dict):
            raise ValueError(
                f"{path} holds {type(state).__name__}, not an Agora state; resume from another checkpoint."
            )
        return cls.from_dict(state, str(path))

    @classmethod
    def from_dict(cls, state: dict[str, Any], source: str = "the Agora state") -> "AgoraState":
        version = state.get("format_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(
                f"{source} has format_version {version!r}, which no hf_bort writes; it is not an Agora state."
            )
        if version > AGORA_STATE_VERSION:
            raise ValueError(
                f"{source} was written by a newer hf_bort (Agora state format {version}; this one reads formats 1 to "
                f"{AGORA_STATE_VERSION}): upgrade hf_bort to resume it, or start the run again in a new output_dir."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        if version == 1:
            missing = sorted(_V1_KEYS - set(state))
            unknown = sorted(set(state) - _V1_KEYS)
        else:
            missing = sorted(known - set(state))
            unknown = sorted(set(state) - known)
        if missing or unknown:
            what = ", ".join(
                part
                for part in (f"lacks {missing}" if missing else "", f"has unknown keys {unknown}" if unknown else "")
                if part
            )
            raise ValueError(
                f"{source} is an Agora state of format {version} that {what}: it was not written by AgoraTrainer or "
                "was edited. Resume from another checkpoint, or start the run again in a new output_dir."
            )
        values = {key: value for key, value in state.items() if key != "format_version"}
        round_fields = {f.name for f in dataclasses.fields(AgoraRound)}
        for record in values["history"]:
            extra = sorted(set(record) - round_fields)
            if extra:
                raise ValueError(f"{source}: a round of its history has unknown keys {extra}; it was edited.")
        values["history"] = [AgoraRound(**record) for record in values["history"]]
        if version == 1:  # format 1 had no label budget: every kept or confidence-dropped row was labelled
            values["labels_spent"] = sum(r.kept + r.low_confidence for r in values["history"])
        return cls(**values)


__all__ = ["AGORA_STATE_VERSION", "AgoraState"]
