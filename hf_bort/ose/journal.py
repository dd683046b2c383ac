"""An OSE search folder: the marker that names its settings, the journal of finished candidates, and the claims that
let several searches (or processes) share the work.

* `search.json` holds the settings that decide a candidate's numbers (with sha256 fingerprints of the parent's
  weights, the tokenizer, the data and the grid); a resume with other settings is refused, naming what changed.
* `candidates-<rank>.jsonl` gets one whole line per finished candidate (one `os.write` under a lock, so a record is
  all or nothing); a line that a crash cut short is repaired on the next start.
* `claims/<candidate>.json` marks a candidate that a live process is evaluating; a claim of a dead process, of an
  earlier run of this process, or older than 24 h is taken over.
* `latency/latency-<key hash>.json` (or `OSEConfig.latency_cache_dir`) holds a latency prediction made on this machine, named by
  everything it depends on, so a resumed search, or another one sharing the folder, cuts the space alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.utils import logging

from .result import CandidateRecord
from .space import Architecture, SearchSpace


logger = logging.get_logger(__name__)

MARKER = "search.json"
_MARKER_HEADER = {"format": "hf_bort.ose.search", "version": 1}
_FINGERPRINTED = {
    "parent_weights": "the parent's weights differ",
    "tokenizer": "the tokenizer differs",
    "train_data": "the training data differ",
    "eval_data": "the eval data differ",
    "space": "the search space differs",
}
# A claim is stale when its process is gone from this host, or (another host, or a reused pid) it is this old.
CLAIM_TIMEOUT_SECONDS = 24 * 3600
CLAIM_POLL_SECONDS = 0.5


def arch_key(arch: Architecture) -> str:
    """depth-heads-hidden-intermediate[-head_dim]: names a candidate in seeds and claim files."""
    return "-".join(str(v) for v in arch.as_dict().values())


def check_search_folder(path: Path) -> None:
    """Refuse a path that is a file, or a non-empty folder that OSE did not create (no search.json marker)."""
    if path.is_file():
        raise ValueError(f"output_dir {path} is a file; pass a folder (new, empty, or an earlier OSE search's).")
    if path.is_dir() and not (path / MARKER).exists():
        entries = [e for e in os.listdir(path) if not e.startswith(f".{MARKER}.")]
        if entries:
            raise ValueError(
                f"output_dir {path} is not empty and holds no {MARKER}, so it is not an OSE search folder and its "
                f"files ({', '.join(sorted(entries)[:3])}{', ...' if len(entries) > 3 else ''}) would be overwritten; "
                "pass a new or empty folder."
            )


def fingerprint_state_dict(model: nn.Module) -> str:
    """sha256 over every state-dict tensor (name, dtype, shape and bytes) in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def fingerprint_tokenizer(tokenizer) -> str:
    """sha256 of a tokenizer's vocabulary, merges, normaliser and special tokens (not its call-time truncation)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = json.dumps(
            {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        )
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items())) + repr(tokenizer.all_special_tokens)
    return hashlib.sha256(f"{type(tokenizer).__name__}|{text}".encode()).hexdigest()


def fingerprint_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over named tensors (name, dtype, shape and bytes) in name order: tokenised data."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def fingerprint_space(space: SearchSpace) -> str:
    """The grid, the family's shape and how heads and neurons are spread over layers (each changes a student)."""
    digest = hashlib.sha256(f"{space.shape!r}|{space.allocation}".encode())
    for name, values in sorted(space.arrays().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    return digest.hexdigest()


class Journal:
    """The files of one search folder, for one run of `OSESearch` (`run_token` names this run's claims)."""

    def __init__(self, folder: Path, run_token: str, wait_timeout: float):
        self.folder, self.run_token, self.wait_timeout = Path(folder), run_token, wait_timeout

    def open(self, settings: dict, state) -> dict[Architecture, CandidateRecord]:
        """Create the marker (or check that the one there names the same search) and read what is finished."""
        meta = self.folder / MARKER
        if meta.exists():
            self._check_same_search(_read_marker(meta), settings)
        state.wait_for_everyone()
        if state.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not _create_exclusively(meta, json.dumps({**_MARKER_HEADER, "settings": settings}, indent=1)):
                self._check_same_search(_read_marker(meta), settings)  # another search created it just now
        state.wait_for_everyone()
        finished, skipped, repaired = self.read(repair=state.is_main_process)
        if skipped or repaired:
            logger.warning(
                f"OSE journal in {self.folder}: repaired {repaired} line(s) cut short by a crash and skipped "
                f"{skipped} unreadable line(s); those candidates are evaluated again."
            )
        return finished

    def append(self, record: CandidateRecord, rank: int) -> None:
        """One `os.write` of a whole line on an O_APPEND file, under an exclusive lock: a record is all or nothing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record.to_dict()) + "\n").encode()
        fd = os.open(self.folder / f"candidates-{rank}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.write(fd, line) != len(line):
                raise OSError(f"Short write to the OSE journal in {self.folder}; check the free disk space.")
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock

    def _check_same_search(self, saved: dict, settings: dict) -> None:
        saved_settings = saved.get("settings")
        if saved_settings == settings:
            return
        changed = [k for k in settings if saved_settings.get(k) != settings[k]]
        changed += [k for k in saved_settings if k not in settings]
        described = ", ".join(
            f"{k} ({_FINGERPRINTED[k]})"
            if k in _FINGERPRINTED
            else f"{k} ({saved_settings.get(k)!r} -> {settings.get(k)!r})"
            for k in changed
        )
        raise ValueError(
            f"{self.folder} holds a search with different settings: {described}; resume with the same settings, "
            "or use another output_dir."
        )

    def read(self, repair: bool = False) -> tuple[dict[Architecture, CandidateRecord], int, int]:
        """Every journaled candidate (the first record of each), with the counts of skipped and repaired lines.

        With `repair`, a journal whose last line has no newline (a crash mid-write of an older version, or a
        truncated copy) is cut back to its last complete line under the writers' lock, so the next record starts on
        a line of its own. A line that swallowed a record still yields that record.
        """
        finished: dict[Architecture, CandidateRecord] = {}
        skipped = repaired = 0
        for path in sorted(self.folder.glob("candidates-*.jsonl")) if self.folder.exists() else []:
            fd = os.open(path, os.O_RDWR if repair else os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if repair else fcntl.LOCK_SH)
                data = path.read_bytes()
                if repair and data and not data.endswith(b"\n"):
                    os.ftruncate(fd, data.rfind(b"\n") + 1)
                    data = data[: data.rfind(b"\n") + 1]
                    repaired += 1
            finally:
                os.close(fd)
            for line in data.decode("utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                record = _parse_record(line)
                if record is None:
                    skipped += 1
                elif record.architecture not in finished:
                    finished[record.architecture] = record
        return finished, skipped, repaired

    def claim(self, arch: Architecture) -> bool:
        """Whether this run may evaluate `arch`: it is not journaled, and no live process holds its claim (taken)."""
        with self._claims_lock():
            return arch not in self.read()[0] and self._take_claim(arch)

    def release(self, arch: Architecture) -> None:
        """Remove `arch`'s claim if this run holds it. Safe wherever an interrupt stopped `claim`, and not itself
        interruptible by SIGINT or SIGTERM (they are held until it returns), so an interrupted search leaves none."""
        with _signals_held(), self._claims_lock():
            holder = _read_claim(self._claim_path(arch))
            if holder is not None and holder.get("token") == self.run_token:
                self._claim_path(arch).unlink()

    def wait_for(self, archs: Iterable[Architecture], evaluate: Callable[[Architecture], object]) -> None:
        """Until every one of `archs` is journaled: `evaluate` those no live claim holds (stale claims are taken
        over), wait for the rest."""
        archs = list(archs)
        deadline = time.monotonic() + self.wait_timeout
        while True:
            finished = self.read()[0]
            missing = [a for a in archs if a not in finished]
            if not missing:
                self._clear_stale_claims(finished)
                return
            if any(evaluate(a) is not None for a in missing):
                continue
            if time.monotonic() > deadline:
                arch = missing[0]
                raise TimeoutError(
                    f"Waited {self.wait_timeout:.0f} s for {len(missing)} candidate(s) claimed by another search "
                    f"in {self.folder} (e.g. {arch}: {_read_claim(self._claim_path(arch))}); rerun to resume "
                    f"once it ends, or delete {self._claim_path(arch).parent} if no search is running."
                )
            time.sleep(CLAIM_POLL_SECONDS)

    def _clear_stale_claims(self, finished: dict[Architecture, CandidateRecord]) -> None:
        """Remove the claims of journaled candidates left by processes that died between journaling and release."""
        with self._claims_lock():
            for arch in finished:
                holder = _read_claim(self._claim_path(arch))
                if holder is not None and _claim_is_stale(holder, self.run_token):
                    self._claim_path(arch).unlink(missing_ok=True)

    def _claim_path(self, arch: Architecture) -> Path:
        return self.folder / "claims" / f"{arch_key(arch)}.json"

    @contextlib.contextmanager
    def _claims_lock(self):
        folder = self.folder / "claims"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _take_claim(self, arch: Architecture) -> bool:
        """Create the candidate's claim file with O_CREAT | O_EXCL (under the claims lock); False if a live one exists."""
        path = self._claim_path(arch)
        holder = _read_claim(path)
        if holder is not None:
            if not _claim_is_stale(holder, self.run_token):
                return False
            logger.warning(f"OSE: taking over the stale claim on {arch} ({holder}).")
            path.unlink(missing_ok=True)
        claim = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "token": self.run_token}
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, json.dumps(claim).encode())
        finally:
            os.close(fd)
        return True


@contextlib.contextmanager
def _signals_held():
    """Defer SIGINT and SIGTERM until the block ends (then they are raised again). Python runs signal handlers on the
    main thread only, so handlers are swapped there; a mask would not do, as another thread would take the signal."""
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in held}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield
        return
    received = []
    for s in held:
        signal.signal(s, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in received:
            signal.raise_signal(s)


def _read_marker(path: Path) -> dict:
    fix = (
        f"if {path.parent} holds only an OSE search, delete it to start again (or delete {path.name} and the "
        "candidates-*.jsonl files), or choose another output_dir"
    )
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt ({error}); {fix}.") from None
    if not isinstance(saved, dict) or saved.get("format") != _MARKER_HEADER["format"]:
        raise ValueError(
            f"{path} was not written by this version of hf_bort's OSE (no format marker), so the parent and data of "
            f"its candidates cannot be checked; {fix}."
        )
    if not isinstance(saved.get("settings"), dict):
        raise ValueError(f"{path} is corrupt (no settings); {fix}.")
    return saved


def _create_exclusively(path: Path, text: str) -> bool:
    """Write `path` whole, atomically, only if it does not exist yet (a temp file hard-linked into place)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    temp.write_text(text)
    try:
        os.link(temp, path)
        return True
    except FileExistsError:
        return False
    finally:
        temp.unlink()


def _latency_entry_path(folder: str | os.PathLike, key: dict) -> Path:
    """Where the latency prediction for `key` (what it depends on: space, protocol, limits, machine) is kept."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(folder) / f"latency-{digest}.json"


def read_latency_entry(folder: str | os.PathLike, key: dict) -> dict | None:
    """The saved prediction for `key`, or None; a file whose key differs (a hash collision) is not used."""
    path = _latency_entry_path(folder, key)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return saved.get("entry") if isinstance(saved, dict) and saved.get("key") == key else None


def write_latency_entry(folder: str | os.PathLike, key: dict, entry: dict) -> None:
    """Save a prediction once: an existing file for the key is left as it is (the first search's stands)."""
    path = _latency_entry_path(folder, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _create_exclusively(path, json.dumps({"key": key, "entry": entry}, indent=1))


def _parse_record(line: str) -> CandidateRecord | None:
    """A journal line's record; a line that a crash cut short and the next record swallowed yields that record."""
    for start in (0, line.rfind('{"architecture"')):
        if start < 0:
            continue
        try:
            return CandidateRecord.from_dict(json.loads(line[start:]))
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError):
            continue
    return None


def _read_claim(path: Path) -> dict | None:
    """The claim's holder, {} for an unreadable claim (its writer died mid-write), None when there is no claim."""
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _claim_is_stale(holder: dict, own_token: str) -> bool:
    """Stale: unreadable; older than `CLAIM_TIMEOUT_SECONDS`; or on this host, held by a dead process, or by this
    process under an earlier run (one search runs per process at a time, so that run has ended)."""
    try:
        pid, host, created = int(holder["pid"]), str(holder["host"]), float(holder["time"])
    except (KeyError, TypeError, ValueError):
        return True
    if time.time() - created > CLAIM_TIMEOUT_SECONDS:
        return True
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return holder.get("token") != own_token
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


__all__ = [
    "MARKER",
    "Journal",
    "arch_key",
    "check_search_folder",
    "fingerprint_space",
    "fingerprint_state_dict",
    "fingerprint_tensors",
    "fingerprint_tokenizer",
    "read_latency_entry",
    "write_latency_entry",
]
