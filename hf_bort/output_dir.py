"""The output folder of a recipe: never a user's folder, and resumed only by the run that started there.

`recipes/glue.py` and `recipes/pretrain.py` share this guard. A recipe writes into a folder that is new or empty, or
that carries its run record (`run_args.json`, written when a run starts: the recipe's name and the settings that decide
the result). With the overwrite flag a run replaces an earlier run of the same recipe; a resume continues one, from a
checkpoint inside that folder and with the same settings. A folder holding anything else is refused whatever the
flags say: a checkpoint in another folder does not make this one the run's to write over.
"""

import json
import os
from pathlib import Path
from typing import Any


RUN_RECORD = "run_args.json"


def _run_record(folder: Path, recipe: str) -> dict[str, Any] | None:
    """The settings of the run of `recipe` that started in `folder`, or None when no such run did."""
    try:
        record = json.loads((folder / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("recipe") != recipe or not isinstance(record.get("settings"), dict):
        return None
    return record["settings"]


def check_output_dir(
    output_dir: str | os.PathLike,
    recipe: str,
    settings: dict[str, Any],
    *,
    overwrite: bool,
    resume: str | os.PathLike | bool | None,
    overwrite_flag: str,
    resume_flag: str,
) -> None:
    """Refuse, before any work, an output folder the run may not write into.

    `resume` is None (a fresh run), True (the last checkpoint of `output_dir`) or a checkpoint's path. `settings` are
    the values a resumed run must share with the run that started in the folder. `overwrite_flag` and `resume_flag`
    (e.g. "--resume_from_checkpoint True") name the recipe's flags in the messages.
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--output_dir {path} is a file; pass a folder (new or empty) to write the run to.")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if resume not in (None, True) and path.resolve() not in Path(resume).resolve().parents:
        raise FileExistsError(
            f"--output_dir {path} is not empty and --resume_from_checkpoint {resume} is not inside it: a checkpoint "
            "in another folder does not make this one the run's to write over. Resume into the folder holding the "
            "checkpoint, or into a new --output_dir."
        )
    started = _run_record(path, recipe)
    if started is None:
        raise FileExistsError(
            f"--output_dir {path} holds files that {recipe} did not write (no {RUN_RECORD} of a {recipe} run); they "
            f"are never overwritten{', not even to resume' if resume is not None else ''}. Choose another "
            "--output_dir, or empty this one yourself."
        )
    if resume is not None:
        changed = {key: (started.get(key), value) for key, value in settings.items() if started.get(key) != value}
        if changed:
            raise ValueError(
                f"Cannot resume in {path}: these settings differ from the run that wrote it (was, now): {changed}. "
                "Pass the original values, or start a new run in another --output_dir."
            )
        return
    if not overwrite:
        raise FileExistsError(
            f"--output_dir {path} holds an earlier {recipe} run. Pass {overwrite_flag} to replace its results, "
            f"{resume_flag} to continue it, or choose another --output_dir."
        )


def record_run(
    output_dir: str | os.PathLike, recipe: str, settings: dict[str, Any], resume: str | os.PathLike | bool | None
) -> None:
    """Mark `output_dir` as written by a run of `recipe` with `settings`, once every input is checked; a resume keeps
    the record of the run it continues."""
    path = Path(output_dir)
    if resume is not None and _run_record(path, recipe) is not None:
        return
    path.mkdir(parents=True, exist_ok=True)
    (path / RUN_RECORD).write_text(json.dumps({"recipe": recipe, "settings": settings}, indent=2) + "\n")


__all__ = ["RUN_RECORD", "check_output_dir", "record_run"]
