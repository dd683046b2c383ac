"""The step that gives CI transformers' common model tests: it keeps only the sdist's tests/, once per version, and
without it the common-test module fails (never skips) with the command that fetches them."""

import importlib.metadata
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scripts" / "fetch_transformers_tests.py"
VERSION = importlib.metadata.version("transformers")


def _load_fetch_module():
    spec = importlib.util.spec_from_file_location("fetch_transformers_tests", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_sdist(folder: Path) -> None:
    """What `pip download` leaves: transformers-X.tar.gz with sources beside tests/ (and no tests/__init__.py)."""
    files = {
        f"transformers-{VERSION}/setup.py": "",
        f"transformers-{VERSION}/src/transformers/__init__.py": "",
        f"transformers-{VERSION}/tests/test_modeling_common.py": "class ModelTesterMixin: ...\n",
        f"transformers-{VERSION}/tests/test_configuration_common.py": "class ConfigTester: ...\n",
    }
    with tarfile.open(folder / f"transformers-{VERSION}.tar.gz", "w:gz") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text.encode()))


def test_fetch_keeps_only_the_tests_of_the_installed_version_and_runs_pip_once(tmp_path, monkeypatch):
    fetch = _load_fetch_module()
    calls = []

    def pip_download(command, check):
        calls.append(command)
        _fake_sdist(Path(command[command.index("-d") + 1]))

    monkeypatch.setattr(fetch.subprocess, "run", pip_download)
    assert fetch.fetch(tmp_path) == VERSION
    assert calls[0][-1] == f"transformers=={VERSION}" and "--no-binary" in calls[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VERSION", "transformers_tests"]  # no sdist, no sources
    assert sorted(p.name for p in (tmp_path / "transformers_tests").iterdir()) == [
        "__init__.py",
        "test_configuration_common.py",
        "test_modeling_common.py",
    ]
    assert (tmp_path / "VERSION").read_text().strip() == VERSION
    fetch.fetch(tmp_path)  # already there: no second download
    assert len(calls) == 1
    (tmp_path / "VERSION").write_text("0.0.1\n")  # another transformers was installed since: fetched again
    fetch.fetch(tmp_path)
    assert len(calls) == 2


def test_the_common_tests_fail_loudly_naming_the_fetch_command_when_not_fetched(tmp_path):
    env = {**os.environ, "HF_BORT_TRANSFORMERS_TESTS": str(tmp_path / "absent")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_transformers_common.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "make transformers-tests" in output and "error" in output.lower()
    assert "skipped" not in output
