"""Add tokens to a tokenizer and grow the policy's embedding / lm_head to match.

VideoSEG-O3 (Sa2VA) adds `[SEG]`, `<p>`, `</p>`, `<vp>`, `</vp>` (seeds_methods.md §1(e)) and
resizes the embeddings; a new row starts at the mean of the existing token rows (transformers'
`resize_token_embeddings(mean_resizing=True)` centres new rows there; here they are exactly
the mean, no sampled noise). The tokens are added as non-special added tokens, as this repo
adds its protocol tags (jaxseg.data.tokenizer): `skip_special_tokens=True` decoding keeps
them, so the environment still sees `[SEG]` in the text.

Released checkpoints pad the vocabulary past the tokenizer (Qwen2.5-VL: 151936 rows, ~151665
tokens), so a new token may get an id inside the padding; its row is set to the mean too. The
vocabulary only grows. `save_pretrained` (weights.py) writes the new vocab_size, and the
tokenizer is saved beside it, so transformers loads the pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .model import Qwen2_5_VLForConditionalGeneration

SEG_TOKENS = ("[SEG]", "<p>", "</p>", "<vp>", "</vp>")


def add_tokens(tokenizer, tokens: Sequence[str] = SEG_TOKENS) -> list[int]:
    """Adds the tokens the tokenizer lacks (non-special, not normalised); returns their ids."""
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    missing = [t for t in dict.fromkeys(tokens) if t not in vocab]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    ids = [int(tokenizer.convert_tokens_to_ids(t)) for t in missing]
    for t, i in zip(missing, ids):
        if tokenizer.encode(t, add_special_tokens=False) != [i]:
            raise ValueError(f"token {t!r} does not encode to its own id {i} after adding it")
    return ids


def resize_token_embeddings(
    model: Qwen2_5_VLForConditionalGeneration,
    vocab_size: int,
    new_ids: Sequence[int] = (),
) -> Qwen2_5_VLForConditionalGeneration:
    """A model with `max(vocab_size, current)` vocabulary rows. Rows of `new_ids` and every
    appended row are the mean of the other pre-existing rows (embedding and, when untied,
    lm_head); everything else is copied. The input model is not modified."""
    cfg = model.config
    old = cfg.text.vocab_size
    size = max(int(vocab_size), old)
    fresh = set(int(i) for i in new_ids) | set(range(old, size))
    if any(i < 0 or i >= size for i in fresh):
        raise ValueError(f"new_ids {sorted(fresh)} fall outside the vocabulary [0, {size})")
    keep = np.asarray([i for i in range(old) if i not in fresh])
    if keep.size == 0:
        raise ValueError("no pre-existing token rows to take the mean of")
    new_cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab_size=size))
    new = nnx.eval_shape(
        lambda: Qwen2_5_VLForConditionalGeneration(new_cfg, dtype=model.dtype, rngs=nnx.Rngs(0))
    )
    old_state = nnx.to_flat_state(nnx.state(model, nnx.Param))
    targets = dict(nnx.to_flat_state(nnx.state(new, nnx.Param)))
    fresh_idx = np.asarray(sorted(fresh), np.int64)
    for path, var in old_state:
        value = np.asarray(var[...])
        name = ".".join(str(k) for k in path)
        if name == "language_model.embed_tokens.embedding":  # [V, D]
            value = _grow(value, size, keep, fresh_idx, axis=0)
        elif name == "lm_head.kernel":  # [D, V]
            value = _grow(value, size, keep, fresh_idx, axis=1)
        targets[path].set_value(jnp.asarray(value))
    return new


def _grow(value: np.ndarray, size: int, keep, fresh, axis: int) -> np.ndarray:
    rows = np.moveaxis(value, axis, 0)
    out = np.zeros((size,) + rows.shape[1:], rows.dtype)
    out[: rows.shape[0]] = rows
    if fresh.size:
        out[fresh] = rows[keep].astype(np.float64).mean(axis=0).astype(rows.dtype)
    return np.moveaxis(out, 0, axis)


def add_tokens_and_resize(
    model: Qwen2_5_VLForConditionalGeneration, tokenizer, tokens: Sequence[str] = SEG_TOKENS
) -> tuple[Qwen2_5_VLForConditionalGeneration, list[int]]:
    """`add_tokens` then `resize_token_embeddings(len(tokenizer))`: (new model, new ids)."""
    ids = add_tokens(tokenizer, tokens)
    return resize_token_embeddings(model, len(tokenizer), ids), ids
