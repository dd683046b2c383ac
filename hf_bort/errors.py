"""One clear line for every bad input: how the `hf-bort` command and the recipes report failures.

Library code raises ordinary exceptions whose message names the problem and the fix. Entry points wrap their `main`
with `run_main`, which prints that message as one line (`hf-bort: error: ...`) and exits non-zero. The full
traceback is shown with `--debug` on the command line or `HF_BORT_DEBUG=1` in the environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any


DEBUG_FLAG = "--debug"
DEBUG_ENV = "HF_BORT_DEBUG"
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


def one_line(error: BaseException) -> str:
    """The exception as one line: its type when the message alone would not say what went wrong."""
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (KeyError, IndexError, AttributeError, TypeError)) and type(error).__name__ not in message:
        message = f"{type(error).__name__}: {message}"
    return message


def run_main(main: Callable[[list[str]], object], prog: str, argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)` (without `--debug`); on failure print one line naming the problem and return non-zero.

    `SystemExit` (argparse's usage errors, explicit exits) passes through unchanged; Ctrl-C exits with 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        result = main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the whole point: any failure becomes one readable line
        if debug:
            raise
        print(f"{prog}: error: {one_line(error)} (run with {DEBUG_FLAG} for the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT
    return result if isinstance(result, int) else 0


def check_model_source(name_or_path: str | os.PathLike, role: str = "model") -> None:
    """Fail early, in plain words, for a model folder that cannot be loaded, before transformers says "Repo id must be
    in the form..." about a typo'd path, or a Hub error while offline.

    A Hub id (`org/name`) that is not a local path passes through: transformers loads it, or reports why not.
    """
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_file():
        raise ValueError(f"{role} {name!r} is a file; pass the folder that holds config.json (or a Hub id).")
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise ValueError(f"{role} folder {name!r} has no config.json; pass a folder written by save_pretrained.")
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (ValueError, AttributeError) as error:  # not JSON (a truncated copy), or JSON but not an object
            raise ValueError(
                f"{role} {str(config)!r} is not a JSON object ({type(error).__name__}: {error}); re-save the model "
                "with save_pretrained or re-download it."
            ) from None
        if not model_type:
            raise ValueError(
                f"{role} {str(config)!r} names no model_type, so transformers cannot tell which model it describes; "
                "pass a folder written by save_pretrained."
            )
        return
    hub_id = name.count("/") <= 1 and not name.startswith((".", "/", "~")) and name.strip() == name and name != ""
    if not hub_id:
        raise FileNotFoundError(f"{role} {name!r} does not exist; pass an existing folder or a Hub id (org/name).")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise FileNotFoundError(
                f"{role} {name!r} is neither a local folder nor in the Hub cache, and HF_HUB_OFFLINE=1 forbids "
                "downloading it; pass an existing folder, or unset HF_HUB_OFFLINE."
            )


def _unreadable_safetensors(folder: Path) -> tuple[Path, Exception] | None:
    """The first `*.safetensors` file in `folder` that safetensors cannot open (header and size), with the error."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(file, framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as error:
            return file, error
    return None


def _corrupt_weights_error(where: str, error: Exception) -> ValueError:
    return ValueError(
        f"{where} is not a valid safetensors file (truncated or corrupt: {error}); re-save or re-download it."
    )


def check_weights_readable(folder: str | os.PathLike, role: str = "model") -> None:
    """Before a long run: every `*.safetensors` file of a local model folder has a readable header and its full size
    (cheap: nothing is loaded), so a truncated download fails now, in plain words, not minutes later."""
    unreadable = _unreadable_safetensors(Path(os.fspath(folder)).expanduser())
    if unreadable is not None:
        file, error = unreadable
        raise _corrupt_weights_error(f"{role} weights {str(file)!r}", error)


@contextlib.contextmanager
def readable_weights(name_or_path: str | os.PathLike, role: str = "model") -> Iterator[None]:
    """Around a `from_pretrained` call: a truncated, empty or random `model.safetensors` becomes one sentence naming
    the file and the fix, instead of safetensors' bare "Error while deserializing header: ...".
    """
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as error:
        folder = Path(os.fspath(name_or_path)).expanduser()
        unreadable = _unreadable_safetensors(folder) if folder.is_dir() else None
        where = (
            f"{role} weights {str(unreadable[0])!r}"
            if unreadable is not None
            else f"a weights file of {role} {str(name_or_path)!r}"
        )
        raise _corrupt_weights_error(where, error) from error


def load_checkpoint(
    model_class: Any, name_or_path: str | os.PathLike, role: str = "model", *, new_weights: bool = False, **kwargs: Any
) -> Any:
    """`model_class.from_pretrained(name_or_path)` with every failure in one sentence: a missing folder, a file, no or
    a broken config.json and corrupt weights are named (`check_model_source`, `readable_weights`), and a checkpoint
    without the weights `model_class` needs is refused unless `new_weights`: transformers would start them at random
    and say so only in a log line (a masked-LM head on a classifier checkpoint, a classifier on a bare encoder).

    A bare encoder may lack a pooler (a masked-LM checkpoint has none): hf_bort reads encoders' hidden states, which
    the pooler does not touch.
    """
    check_model_source(name_or_path, role)
    with readable_weights(name_or_path, role):
        model, info = model_class.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    missing = sorted(info["missing_keys"])
    if model.base_model is model:
        missing = [key for key in missing if not key.startswith("pooler.")]
    if missing and not new_weights:
        saved_as = ", ".join(getattr(model.config, "architectures", None) or ["an unnamed model class"])
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ValueError(
            f"{role} {str(name_or_path)!r} holds a {saved_as} checkpoint without the weights {type(model).__name__} "
            f"needs ({len(missing)} missing: {shown}); they would start random. Load it as what it holds, or pass a "
            "checkpoint that has them."
        )
    return model


def check_input_file(path: str | os.PathLike, role: str, fix: str) -> Path:
    """An input file that exists, is a file and is not empty (0 bytes); otherwise one sentence naming it and `fix`."""
    path = Path(os.fspath(path)).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{role} {path} is a folder, not a file; {fix}")
    if not path.exists():
        raise FileNotFoundError(f"{role} {path} does not exist; {fix}")
    if path.stat().st_size == 0:
        raise ValueError(f"{role} {path} is empty (0 bytes); {fix}")
    return path


__all__ = [
    "DEBUG_ENV",
    "DEBUG_FLAG",
    "check_input_file",
    "check_model_source",
    "check_weights_readable",
    "load_checkpoint",
    "one_line",
    "readable_weights",
    "run_main",
]
