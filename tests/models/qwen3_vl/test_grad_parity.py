"""Training fidelity: the gradient of a teacher-forced loss through the whole Qwen3-VL (text,
vision tower, learned position table, DeepStack) equals transformers' autograd gradient for
every tensor, named by the checkpoint's own names (fp32, highest matmul precision)."""

from __future__ import annotations

import numpy as np
import optax
import torch
from flax import nnx
from safetensors.numpy import load_file

from jaxseg.models.family import save_pretrained

from .conftest import IMAGE, image_tokens, pixels

GRID = (1, 4, 6)  # an image of 4 x 6 patches: the position table is resampled to it


def test_every_parameter_gradient_equals_transformers(hf_dir, tmp_path):
    hf_model, path = hf_dir
    from jaxseg.models.qwen3_vl import from_pretrained

    model = from_pretrained(path)  # a fresh copy: the gradient replaces its weights below
    ids = np.asarray([[5, 6] + image_tokens(GRID) + [7, 8, 9, 10]] * 2)
    pv = np.concatenate([pixels(1, GRID), pixels(2, GRID)])
    grid = np.asarray([GRID, GRID])
    targets = np.asarray([[11, 12, 13], [14, 15, 16]])

    ids_t = torch.tensor(ids)
    hf_model.zero_grad()
    logits = hf_model(
        input_ids=ids_t,
        attention_mask=torch.ones_like(ids_t),
        mm_token_type_ids=(ids_t == IMAGE).long(),
        pixel_values=torch.tensor(pv),
        image_grid_thw=torch.tensor(grid),
    ).logits[:, -3:]
    loss_t = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), torch.tensor(targets).reshape(-1)
    )
    loss_t.backward()
    want = {k: p.grad.numpy().copy() for k, p in hf_model.named_parameters() if p.grad is not None}
    hf_model.zero_grad()

    def loss_fn(m):
        out = m(ids, attention_mask=np.ones_like(ids), pixel_values=pv, image_grid_thw=grid)
        return optax.softmax_cross_entropy_with_integer_labels(out[:, -3:], targets).mean()

    loss_j, grads = nnx.value_and_grad(loss_fn)(model)
    np.testing.assert_allclose(float(loss_j), float(loss_t.detach()), rtol=1e-5)
    # write the gradient through the checkpoint writer: the names and layouts of the HF side
    nnx.update(model, grads)
    save_pretrained(model, tmp_path)
    got = {}
    for f in sorted(tmp_path.glob("*.safetensors")):
        got.update(load_file(f))
    assert "model.visual.pos_embed.weight" in want  # the position table is trained
    for name, g in want.items():
        assert name in got, name
        scale = np.abs(g).max() + 1e-12
        err = np.abs(got[name].astype(np.float32) - g).max() / scale
        assert err < 1e-4, (name, err)
