"""Loading, packing and masking plain text for masked-LM pretraining."""

import pytest
from transformers import BertConfig

from hf_bort.text_data import MaskedLMCollator, check_block_size, load_text, mask_once, pack_into_blocks


def test_load_text_reads_files_and_folders_dropping_blank_lines_and_crlf(tmp_path):
    (tmp_path / "a.raw").write_bytes(b" = Title = \r\n \r\n First line .\r\n")
    (tmp_path / "b.txt").write_text("second file\n\n")
    (tmp_path / "skip.json").write_text("{}")
    assert load_text(tmp_path / "a.raw")["text"] == ["= Title =", "First line ."]
    assert load_text(tmp_path)["text"] == ["= Title =", "First line .", "second file"]


def test_load_text_rejects_missing_empty_and_textless_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text(tmp_path / "missing.raw")
    (tmp_path / "blank.txt").write_text(" \r\n\n \n")
    with pytest.raises(ValueError, match="holds no text"):
        load_text(tmp_path / "blank.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="No text files"):
        load_text(tmp_path / "folder")


def test_pack_into_blocks_cuts_the_token_stream_into_wrapped_blocks(wikitext_dir, tokenizer):
    text = load_text(wikitext_dir / "wiki.valid.raw").select(range(40))
    blocks = pack_into_blocks(text, tokenizer, block_size=32)
    stream = [t for line in text["text"] for t in tokenizer(line, add_special_tokens=False)["input_ids"]]
    assert len(blocks) == len(stream) // 30
    bodies = []
    for block in blocks:
        ids = block["input_ids"]
        assert len(ids) == 32 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert block["special_tokens_mask"] == [1] + [0] * 30 + [1] and block["attention_mask"] == [1] * 32
        bodies.extend(ids[1:-1])
    assert bodies == stream[: len(bodies)]
    assert len(pack_into_blocks(text, tokenizer, block_size=32, max_blocks=3)) == 3


def test_pack_into_blocks_explains_a_corpus_shorter_than_a_block(tmp_path, tokenizer):
    (tmp_path / "short.txt").write_text("just a few words\n")
    with pytest.raises(ValueError, match="fewer than one block of 128"):
        pack_into_blocks(load_text(tmp_path / "short.txt"), tokenizer, block_size=128)


def test_check_block_size_names_the_position_table():
    check_block_size(64, BertConfig(max_position_embeddings=64))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=64.*--block_size 64"):
        check_block_size(65, BertConfig(max_position_embeddings=64))


def test_held_out_masking_is_fixed_by_seed_and_kept_by_the_collator(wikitext_dir, tokenizer):
    blocks = pack_into_blocks(load_text(wikitext_dir / "wiki.test.raw").select(range(60)), tokenizer, block_size=64)
    first, again = mask_once(blocks, tokenizer, 0.15, seed=3), mask_once(blocks, tokenizer, 0.15, seed=3)
    assert first["labels"] == again["labels"] and first["input_ids"] == again["input_ids"]
    assert first["labels"] != mask_once(blocks, tokenizer, 0.15, seed=4)["labels"]

    collator = MaskedLMCollator(tokenizer, 0.15)
    fixed = collator([first[i] for i in range(4)])
    assert fixed["labels"].tolist() == first["labels"][:4] and fixed["input_ids"].tolist() == first["input_ids"][:4]
    dynamic = collator([blocks[i] for i in range(len(blocks))])
    masked = dynamic["labels"] != -100
    assert 0.08 < masked.float().mean().item() < 0.22  # about mlm_probability of the tokens
    assert not masked[:, 0].any() and not masked[:, -1].any()  # [CLS] and [SEP] are never targets
