"""[SEG] & co. added to a real tokenizer, embeddings grown with mean rows, and the pair
written with save_pretrained loads in transformers with the same logits."""

import numpy as np
import pytest

from jaxseg.data.tokenizer import build_tokenizer
from jaxseg.models.qwen2_5_vl import from_pretrained, save_pretrained
from jaxseg.models.qwen2_5_vl.resize import (
    SEG_TOKENS,
    add_tokens,
    add_tokens_and_resize,
    resize_token_embeddings,
)

from .conftest import tiny_hf_config


def _hf_model(vocab, tie):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    cfg = tiny_hf_config(tie_word_embeddings=tie)
    cfg.text_config.vocab_size = vocab
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(cfg).eval()


@pytest.mark.parametrize("tie", [False, True])
def test_added_tokens_round_trip_through_transformers(tmp_path, tie):
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    tok = build_tokenizer(400, texts=["the red square moves left", "a blue circle"] * 5)
    old_len = len(tok)
    _hf_model(old_len, tie).save_pretrained(tmp_path / "base")
    model = from_pretrained(tmp_path / "base")
    old_embed = np.asarray(model.language_model.embed_tokens.embedding[...])

    new, ids = add_tokens_and_resize(model, tok)
    assert "[SEG]" in tok.get_vocab() and tok.convert_tokens_to_ids("[SEG]") not in ids
    assert len(ids) == len(SEG_TOKENS) - 1 and ids == list(range(old_len, old_len + 4))
    assert new.config.text.vocab_size == len(tok) == old_len + 4
    embed = np.asarray(new.language_model.embed_tokens.embedding[...])
    np.testing.assert_array_equal(embed[:old_len], old_embed)
    np.testing.assert_allclose(
        embed[ids], np.broadcast_to(old_embed.mean(0), (4, 64)), rtol=1e-5, atol=1e-8
    )
    if not tie:
        head = np.asarray(new.lm_head.kernel[...])
        np.testing.assert_allclose(
            head[:, ids].T,
            np.broadcast_to(head[:, :old_len].mean(1), (4, 64)),
            rtol=1e-5,
            atol=1e-7,
        )

    out = tmp_path / "resized"
    save_pretrained(new, out)
    tok.save_pretrained(out)
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(out).eval()
    hf_tok = AutoTokenizer.from_pretrained(out)
    text = "the <vp>red</vp> square [SEG] <p>it</p>"
    enc = hf_tok.encode(text, add_special_tokens=False)
    assert enc == tok.encode(text, add_special_tokens=False)
    assert set(ids) <= set(enc)
    assert hf_tok.decode(enc, skip_special_tokens=True) == text
    with torch.no_grad():
        want = hf(input_ids=torch.tensor([enc])).logits.numpy()
    got = np.asarray(new(np.asarray([enc])))
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


def test_ids_inside_padded_vocab_get_mean_rows(tmp_path):
    """A checkpoint with more rows than tokens: a new token lands in the padding; the
    vocabulary does not shrink and that row (only) becomes the mean."""
    tok = build_tokenizer(400, texts=["a b c"] * 5)
    _hf_model(len(tok) + 10, True).save_pretrained(tmp_path)
    model = from_pretrained(tmp_path)
    before = np.asarray(model.language_model.embed_tokens.embedding[...])
    ids = add_tokens(tok, ["<vp>"])
    new = resize_token_embeddings(model, len(tok), ids)
    after = np.asarray(new.language_model.embed_tokens.embedding[...])
    assert new.config.text.vocab_size == before.shape[0]
    others = [i for i in range(before.shape[0]) if i not in ids]
    np.testing.assert_array_equal(after[others], before[others])
    np.testing.assert_allclose(after[ids[0]], before[others].mean(0), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        resize_token_embeddings(model, 4, [10**6])
