"""Fetch transformers' own common model tests (ModelTesterMixin, ConfigTester) for the installed transformers.

The wheel ships no tests; the PyPI sdist of the same version ships `tests/*.py`. This downloads that sdist with pip
and keeps only its `tests/` as the package `transformers_tests` under DEST (default `.transformers-tests/`, ignored by
git: none of it is ever committed; or $HF_BORT_TRANSFORMERS_TESTS). `tests/test_transformers_common.py` imports from there.

Usage: python tests/scripts/fetch_transformers_tests.py [DEST]
Idempotent: when DEST already holds the tests of the installed version, it returns at once without the network.
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


# tests/test_transformers_common.py reads the same place (HF_BORT_TRANSFORMERS_TESTS overrides it for both)
DEFAULT_DEST = Path(
    os.environ.get("HF_BORT_TRANSFORMERS_TESTS", Path(__file__).resolve().parents[2] / ".transformers-tests")
)
PACKAGE = "transformers_tests"  # not `tests`: that name is this repository's own test package


def fetch(dest: Path) -> str:
    """Download and extract the tests of the installed transformers into `dest`/transformers_tests; its version."""
    version = importlib.metadata.version("transformers")
    stamp = dest / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == version and (dest / PACKAGE).is_dir():
        return version
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as work:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d", work]
        subprocess.run([*pip, f"transformers=={version}"], check=True)
        (sdist,) = Path(work).glob("transformers-*.tar.gz")
        staged = Path(work) / PACKAGE
        with tarfile.open(sdist) as archive:
            prefix = f"transformers-{version}/tests/"
            for member in archive.getmembers():
                if member.name.startswith(prefix) and member.isfile():
                    member.name = member.name[len(prefix) :]
                    archive.extract(member, staged, filter="data")
        if not (staged / "test_modeling_common.py").is_file():
            raise SystemExit(f"The sdist of transformers {version} has no tests/test_modeling_common.py.")
        # transformers' tests/ is a package in its repository, and ConfigTester imports its `__init__.py`; the sdist
        # leaves that empty file out.
        (staged / "__init__.py").touch()
        shutil.rmtree(dest / PACKAGE, ignore_errors=True)
        staged.rename(dest / PACKAGE)
    stamp.write_text(version + "\n")
    return version


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DEST
    print(f"transformers {fetch(target)} tests in {target / PACKAGE}")
