"""MAGI-1 text side: T5 v1.1 from DeepFloyd's `.bin` shards vs transformers' T5EncoderModel, caption cleaning,
special tokens."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from videosdgx.magi1.caption import clean_caption
from videosdgx.magi1.loaders import load_text_encoder
from videosdgx.magi1.special_tokens import chunk_captions, load_special_tokens
from videosdgx.runtime.errors import CheckpointError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.magi1 import special_tokens_arrays, write_magi1_bundle


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    models = write_magi1_bundle("magi-1-4.5b-base", tmp_path_factory.mktemp("models"))
    return models / "text_encoders" / "t5-v1_1-xxl"


def test_t5_matches_transformers(t5_folder):
    ours = load_text_encoder(t5_folder / "pytorch_model.bin.index.json", t5_folder / "spiece.model", LoadRequest())
    reference = transformers.T5EncoderModel.from_pretrained(t5_folder).eval()
    prompts = ["a red fox running through snow", "A cat sits on a boat, at sunset!"]
    encoded = ours.encode(prompts)
    ids, mask = ours.tokenizer.encode([clean_caption(p) for p in prompts], max_length=800)
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    for (emb, m), exp, exp_mask in zip(encoded, expected, mask):
        assert emb.shape == (800, 32) and torch.equal(m, exp_mask)
        valid = exp_mask.bool()
        assert ((emb[valid] - exp[valid]).abs().max() / exp[valid].abs().max()).item() < 1e-5


def test_caption_cleaning_matches_official():
    expected = json.loads((Path(__file__).parent / "reference" / "magi1" / "captions.json").read_text())
    assert {caption: clean_caption(caption) for caption in expected} == expected


def test_special_tokens(tmp_path):
    path = tmp_path / "special_tokens.npz"
    arrays = special_tokens_arrays(dim=4)
    np.savez(path, **arrays)
    tokens = load_special_tokens(path)
    caption, mask, null = torch.randn(6, 4), torch.tensor([1, 1, 1, 0, 0, 0.]), torch.zeros(6, 4)
    cond, cond_mask = chunk_captions([(caption, mask)] * 2, tokens, clean_chunks=1, null=null)
    other = torch.from_numpy(arrays["other_tokens"].astype(np.float16)).float()
    assert torch.equal(cond[0], null) and cond_mask[0].sum() == 0  # the clean prefix chunk
    assert torch.equal(cond[1, 0], other[8]) and torch.equal(cond[2, 0], other[7])  # 2 chunks left, then 1
    assert torch.equal(cond[1, 1], other[1]) and torch.equal(cond[1, 2:], caption[:4])
    assert cond_mask[1].tolist() == [1, 1, 1, 1, 1, 0]
    np.savez(path, other_tokens=arrays["other_tokens"])
    with pytest.raises(CheckpointError, match="not MAGI-1's special_tokens.npz"):
        load_special_tokens(path)
