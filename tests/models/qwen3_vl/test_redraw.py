"""`redraw_with_transformers`: our architecture, transformers' initial draw, exactly."""

from __future__ import annotations

import numpy as np
import torch
import transformers
from flax import nnx

from jaxseg.models.family import get_family, redraw_with_transformers, save_pretrained

from .conftest import IDS, VOCAB


def _ours(seed: int):
    family = get_family("qwen3_vl")
    cfg = family.preset("nano", vocab_size=VOCAB, **IDS)
    return family.build(cfg, rngs=nnx.Rngs(seed))


def _flat(model) -> dict[str, np.ndarray]:
    return {
        "/".join(map(str, k)): np.asarray(v[...])
        for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }


def test_redraw_is_transformers_own_draw_of_the_same_architecture(tmp_path):
    ours = _ours(0)
    redrawn = redraw_with_transformers(ours, 3)
    a, b = _flat(ours), _flat(redrawn)
    assert a.keys() == b.keys()
    assert all(a[k].shape == b[k].shape for k in a)
    matrices = [k for k in a if a[k].ndim >= 2]
    assert all(not np.allclose(a[k], b[k]) for k in matrices)  # a new draw, every matrix
    # ... and it is transformers' draw: the same seed's HF model holds these very numbers
    save_pretrained(ours, tmp_path)
    config = transformers.AutoConfig.from_pretrained(tmp_path)
    torch.manual_seed(3)
    hf = getattr(transformers, config.architectures[0])(config)
    embed = hf.model.language_model.embed_tokens.weight.detach().numpy()
    ours_embed = [v for k, v in b.items() if "embed_tokens" in k]
    assert len(ours_embed) == 1 and np.array_equal(ours_embed[0], embed)
    pos = hf.model.visual.pos_embed.weight.detach().numpy()
    ours_pos = [v for k, v in b.items() if "pos_embed" in k]
    assert len(ours_pos) == 1 and np.array_equal(ours_pos[0], pos)
    # a different seed draws differently
    again = _flat(redraw_with_transformers(ours, 4))
    assert not np.allclose(again[matrices[0]], b[matrices[0]])
