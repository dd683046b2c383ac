"""The package as users meet it: a built wheel that works without the source tree, a light `import hf_bort`, and
the lower bounds it declares, which the floor environment installs."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO_ROOT, minilm_dir


# Read by a user of the package only through the jobs that need them; `import hf_bort` must not load any that
# `from transformers import AutoModel` does not load already (transformers 5.14 loads scipy and scikit-learn there).
HEAVY_MODULES = ("pandas", "datasets", "pyarrow", "evaluate", "peft", "matplotlib", "scipy", "sklearn")


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH: the child sees only what its interpreter installs."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_import_hf_bort_loads_none_of_the_heavy_modules_and_still_registers():
    script = textwrap.dedent(
        f"""
        import json, sys
        from transformers import AutoModel
        before = {{name.split(".")[0] for name in sys.modules}}
        import hf_bort
        loaded = sorted({{name.split(".")[0] for name in sys.modules}} - before & set({HEAVY_MODULES!r}))
        eager_model = "hf_bort.modeling_bort" in sys.modules
        from transformers import AutoConfig, AutoModelForSequenceClassification
        config = AutoConfig.for_model("bort", hidden_size=32, num_attention_heads=4, num_hidden_layers=1,
                                      intermediate_size=37, vocab_size=99, max_position_embeddings=16)
        model = AutoModelForSequenceClassification.from_config(config)
        print(json.dumps({{"loaded": loaded, "eager_model": eager_model, "class": type(model).__name__,
                           "auto_class": type(model)._auto_class, "dir": "OSESearch" in dir(hf_bort)}}))
        """
    )
    env = {**_clean_env(), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [] and not report["eager_model"]
    assert report["class"] == "BortForSequenceClassification"
    assert report["auto_class"] == "AutoModelForSequenceClassification" and report["dir"]


def test_import_hf_bort_loads_nothing_beyond_what_transformers_automodel_loads():
    """A deterministic stand-in for import time: `import hf_bort` adds only its own modules to what
    `import transformers; from transformers import AutoModel` loads (an eager `transformers.activations` once cost
    2.5 s this way)."""

    def modules(statement: str) -> set[str]:
        script = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
        env = {**_clean_env(), "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return set(json.loads(done.stdout.strip().splitlines()[-1]))

    baseline = modules("import transformers\nfrom transformers import AutoModel")
    extra = modules("import hf_bort") - baseline
    assert sorted(m for m in extra if m.split(".")[0] != "hf_bort") == []


def test_the_floor_environment_installs_exactly_the_lower_bounds_pyproject_declares():
    """The declared range is the tested range: `make test-floor` installs .ci/floor-requirements.txt (and torch at the
    Makefile's TORCH_VERSION), whose first block must be pyproject.toml's lower bounds, one for one."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    tested = [*project["dependencies"], *extras["onnx"], *extras["plots"], *extras["lora"], extras["test"][0]]
    floors = {}
    for line in tested:
        requirement = Requirement(line)
        (floor,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        floors[canonicalize_name(requirement.name)] = Version(floor)
    text = (REPO_ROOT / ".ci" / "floor-requirements.txt").read_text(encoding="utf-8")
    first_block = text.split("# pyproject.toml's lower bounds")[1].split("\n\n")[0]
    pins = dict(line.split("==") for line in first_block.splitlines()[1:])
    pins = {canonicalize_name(name): Version(version) for name, version in pins.items()}
    torch_version = re.search(r"^TORCH_VERSION \?= (.+)$", (REPO_ROOT / "Makefile").read_text(), re.M)[1]
    assert {**pins, "torch": Version(torch_version)} == floors
    assert extras["test"][0].startswith("pytest")


def test_unknown_attribute_is_an_attribute_error():
    import hf_bort

    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        hf_bort.NoSuchThing  # noqa: B018


def _build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the package sources, so the checkout gets no build/ or egg-info."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for folder in ("hf_bort", "model_cards"):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheel_dir = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir)]
    done = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = wheel_dir.glob("hf_bort-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_renders_a_card_and_runs_an_ose_search_without_the_source_tree(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.name for p in (REPO_ROOT / "model_cards").glob("*.md")}
    assert {f"hf_bort/model_cards/{name}" for name in templates} <= names
    assert {"hf_bort/metrics/glue_metric.py", "hf_bort/modeling_ort.py", "hf_bort/ose/search.py"} <= names
    assert {"hf_bort/cli/__init__.py", "hf_bort/cli/extract.py"} <= names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "hf-bort = hf_bort.cli:main" in entry_points
    assert not any(name.startswith(("tests/", "recipes/", "benchmarks/", "model_cards/")) for name in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Provides-Extra: onnx" in metadata and "Provides-Extra: lora" in metadata
    assert not any(line.startswith("Requires-Dist: peft") and "extra" not in line for line in metadata.splitlines())

    # A venv over this test environment's packages: its own site-packages first, then ours through a .pth line
    # (a .pth line adds a path without running that path's .pth files, so the checkout's editable install stays out).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True).strip())  # fmt: skip
    outer = [p for p in sys.path if p.endswith("site-packages")]
    (site / "outer_env.pth").write_text("\n".join(outer) + "\n")
    # --force-reinstall: the outer environment holds an hf-bort of the wheel's version (an editable install of a
    # checkout), which pip may otherwise take as already installed and skip the wheel
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    install += ["--force-reinstall"]
    done = subprocess.run([*install, str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    script = textwrap.dedent(
        f"""
        import json, sys
        import torch, transformers as tr
        import hf_bort
        from hf_bort import OSEConfig, OSESearch, SearchSpace, render_model_card
        from hf_bort.hub import MODEL_CARDS_DIR

        results = {{"task": "sst2", "model": "me/parent", "metrics": {{"validation": {{"accuracy": 0.8125}}}},
                    "rows": {{"train": 64, "validation": 16}}, "hyperparameters": {{}}}}
        card = render_model_card(results, tr.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4))
        tokenizer = tr.AutoTokenizer.from_pretrained({str(minilm_dir())!r})
        torch.manual_seed(0)
        parent = tr.BertModel(tr.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=37, max_position_embeddings=64))
        texts = ["the cat sat on the mat", "a bird sings in the park", "rain falls on the town"] * 4
        space = SearchSpace.from_config(parent.config, step=16)
        args = OSEConfig(epsilon=0.5, interval=1, seq_len=16, batch_size=4, max_candidates=2, max_steps=2,
                         show_progress=False)
        search = OSESearch(parent, args, space=space, train_dataset=texts, tokenizer=tokenizer)
        result = search.run()
        print(json.dumps({{"file": hf_bort.__file__, "cards": str(MODEL_CARDS_DIR), "card": card.text,
                           "records": len(result.records), "best": str(result.best),
                           "modules": [m for m in ("tests", "recipes") if m in sys.modules]}}))
        """
    )
    done = subprocess.run(
        [str(python), "-I", "-c", script], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(site) and Path(report["cards"]) == site / "hf_bort" / "model_cards"
    assert "SST-2" in report["card"] and "0.8125" in report["card"]
    assert report["records"] == 2 and report["best"] and report["modules"] == []


def test_a_missing_extra_is_named_in_the_error(monkeypatch):
    from hf_bort.extras import require

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without [plots] looks like to import
    with pytest.raises(ImportError, match=r"pip install 'hf-bort\[plots\]'"):
        require("matplotlib")
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"LoRA.*pip install 'hf-bort\[lora\]'"):
        require("peft")
