"""recipes/pretrain.py: bad input fails early with a clear error; a tiny distillation run works on two processes."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from tests.conftest import REPO_ROOT, two_process_launcher


def _recipe():
    spec = importlib.util.spec_from_file_location("pretrain_recipe", REPO_ROOT / "recipes" / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the recipe's string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


TINY_STUDENT = [
    "--student_layers", "2", "--student_heads", "4", "--student_hidden", "32", "--student_intermediate", "64",
]  # fmt: skip


def _argv(teacher, train_file, output_dir, *extra):
    return [
        "--teacher", str(teacher), "--train_file", str(train_file), "--output_dir", str(output_dir), *TINY_STUDENT,
        "--max_steps", "1", "--use_cpu", "true", "--report_to", "none", *extra,
    ]  # fmt: skip


def test_empty_corpus_is_a_clear_error(tmp_path, minilm_path):
    (tmp_path / "empty.txt").write_text("\r\n \n")
    with pytest.raises(ValueError, match="holds no text"):
        _recipe().main(_argv(minilm_path, tmp_path / "empty.txt", tmp_path / "out"))


def test_block_size_above_the_teachers_position_table_is_a_clear_error(tmp_path, minilm_path, wikitext_dir):
    argv = _argv(minilm_path, wikitext_dir / "wiki.valid.raw", tmp_path / "out", "--block_size", "1024")
    with pytest.raises(ValueError, match="block_size=1024 exceeds max_position_embeddings=512"):
        _recipe().main([*argv, "--student_max_positions", "2048"])


def test_tokenizer_other_than_the_teachers_is_refused_for_distillation(tmp_path, minilm_path, wikitext_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.add_tokens(["bortword"])
    tokenizer.save_pretrained(tmp_path / "tok")
    argv = _argv(minilm_path, wikitext_dir / "wiki.valid.raw", tmp_path / "out", "--tokenizer", str(tmp_path / "tok"))
    with pytest.raises(ValueError, match="do not share a vocabulary"):
        _recipe().main(argv)


def test_existing_output_is_not_overwritten_without_asking(tmp_path, minilm_path, wikitext_dir):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):  # --overwrite replaces an earlier run of the recipe, never a user's files
        with pytest.raises(FileExistsError, match="holds files that pretrain.py did not write"):
            _recipe().main(_argv(minilm_path, wikitext_dir / "wiki.valid.raw", tmp_path / "out", *extra))
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
def test_two_process_distillation_run_saves_a_hub_ready_student(tmp_path, minilm_path, wikitext_dir):
    out = tmp_path / "student"
    command = [
        *two_process_launcher(),
        str(REPO_ROOT / "recipes" / "pretrain.py"),
        *_argv(minilm_path, wikitext_dir / "wiki.valid.raw", out),
        "--eval_file", str(wikitext_dir / "wiki.test.raw"), "--block_size", "64", "--max_train_blocks", "32",
        "--max_eval_blocks", "8", "--max_steps", "4", "--per_device_train_batch_size", "4",
        "--learning_rate", "2e-3", "--save_steps", "2", "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    results = json.loads((out / "held_out_losses.json").read_text())
    assert results["num_processes"] == 2 and results["signals"] == ["hidden"] and results["steps"] == 4
    for stage in ("untrained", "trained"):
        assert all(math.isfinite(value) for value in results[stage].values())
    assert results["trained"]["loss"] < results["untrained"]["loss"]
    assert (out / "checkpoint-4" / "distillation_projector.safetensors").is_file()

    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: fill-mask" in card and "MiniLM" not in card.split("---")[0]
    import hf_bort  # noqa: F401  registers Bort

    model = AutoModelForMaskedLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["the capital of france is [MASK] ."], return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        logits = model(**batch).logits
    assert type(model).__name__ == "BortForMaskedLM" and logits.shape[-1] == len(tokenizer) == 30522


def test_extracted_student_starts_from_the_teachers_weights(tmp_path, minilm_path, wikitext_dir):
    """--init extract (OSE) and --init FOLDER both give a Bort student whose encoder is the extraction."""
    from transformers import AutoModel

    from hf_bort import Architecture, extract_subnetwork

    teacher = AutoModel.from_pretrained(minilm_path)
    extracted = extract_subnetwork(teacher, Architecture(2, 4, 64, 128), as_bort=True)
    extracted.save_pretrained(tmp_path / "extracted")
    recipe = _recipe()
    for init in ("extract", str(tmp_path / "extracted")):
        argv = _argv(minilm_path, wikitext_dir / "wiki.valid.raw", tmp_path / "out", "--init", init)
        argv[argv.index("--student_hidden") + 1], argv[argv.index("--student_intermediate") + 1] = "64", "128"
        script, _ = recipe.HfArgumentParser(
            (recipe.PretrainArguments, recipe.DistillationArguments)
        ).parse_args_into_dataclasses(argv)
        student = recipe._build_student(script, AutoTokenizer.from_pretrained(minilm_path), teacher, seed=0)
        assert type(student).__name__ == "BortForMaskedLM"
        for name, tensor in extracted.state_dict().items():
            assert torch.equal(student.bort.state_dict()[name], tensor), (init, name)
        assert student.lm_head.decoder.weight.data_ptr() == student.bort.embeddings.word_embeddings.weight.data_ptr()


def test_init_must_name_a_mode_or_a_folder(tmp_path, minilm_path, wikitext_dir):
    with pytest.raises(ValueError, match="--init must be 'random', 'extract' or a folder"):
        _recipe().main(_argv(minilm_path, wikitext_dir / "wiki.valid.raw", tmp_path / "out", "--init", "nowhere"))
