"""Our prompt encoder + mask decoder equal sam2's torch modules
(<= 1e-4, fp32) on the same features and prompts, the [SEG] token injection included."""

from __future__ import annotations

import copy
import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxseg.models.sam2 import (
    apply_object_score,
    export_torch_state_dict,
    from_torch_weights,
    tiny,
    upscale_logits,
)
from jaxseg.models.sam2.mask_decoder import dynamic_multimask_via_stability
from jaxseg.models.sam2.torch_reference import build_torch_heads, torch_state_dict

TOL = 1e-4
B = 2


@pytest.fixture(scope="module")
def heads():
    cfg = tiny()
    pe, md = build_torch_heads(cfg)
    ours = from_torch_weights(cfg, torch_state_dict(pe, md))
    return cfg, pe, md, ours


def _features(cfg, seed=0):
    g = np.random.default_rng(seed)
    c, h = cfg.transformer_dim, cfg.image_embedding_size
    (c0, h0, _), (c1, h1, _) = cfg.high_res_shapes
    embed = g.normal(size=(B, c, h, h)).astype(np.float32)
    hr = [
        g.normal(size=(B, c0, h0, h0)).astype(np.float32),
        g.normal(size=(B, c1, h1, h1)).astype(np.float32),
    ]
    return embed, hr


def _prompts(cfg, case, seed=1):
    g = np.random.default_rng(seed)
    s = cfg.input_image_size
    p = {"points": None, "boxes": None, "mask_input": None, "extra_tokens": None}
    # Point counts keep the token count N in {2, 3, 4} (fewer shapes to compile): one point +
    # the pad when no box follows, two points before a box.
    if case in ("points", "points_seg"):
        coords = g.uniform(0, s, (B, 1, 2)).astype(np.float32)
        p["points"] = (coords, np.array([[1], [0]], np.int32))
    if case == "points_boxes":
        coords = g.uniform(0, s, (B, 2, 2)).astype(np.float32)
        p["points"] = (coords, np.array([[1, 0], [-1, 1]], np.int32))  # a padding label too
    if case in ("boxes", "points_boxes"):
        x0, y0 = g.uniform(0, s / 2, (2, B))
        p["boxes"] = np.stack([x0, y0, x0 + s / 3, y0 + s / 4], 1).astype(np.float32)
    if case == "mask":
        m = cfg.mask_input_size
        p["mask_input"] = (4 * g.normal(size=(B, 1, m, m))).astype(np.float32)
    if case in ("seg", "points_seg", "seg2"):
        k = 2 if case == "seg2" else 1
        p["extra_tokens"] = g.normal(size=(B, k, cfg.transformer_dim)).astype(np.float32)
    return p


def torch_reference(pe, md, embed, hr, points, boxes, mask_input, extra_tokens, multimask):
    """What sam2 computes: `_forward_sam_heads`' (0,0)/-1 point when there is no point or box
    prompt, then Sa2VA's `torch.cat([sparse_embeddings, language_embd], dim=1)`."""
    t = torch.from_numpy
    with torch.no_grad():
        if points is None and boxes is None:
            tp = (torch.zeros(B, 1, 2), -torch.ones(B, 1, dtype=torch.int32))
        else:
            tp = None if points is None else (t(points[0]), t(points[1]))
        sparse, dense = pe(
            points=tp,
            boxes=None if boxes is None else t(boxes),
            masks=None if mask_input is None else t(mask_input),
        )
        if extra_tokens is not None:
            sparse = torch.cat([sparse, t(extra_tokens)], dim=1)
        masks, iou, tokens, obj = md(
            image_embeddings=t(embed),
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=[t(x) for x in hr],
        )
    return [x.numpy() for x in (masks, iou, tokens, obj)]


def _max_diffs(ours, ref):
    names = ("masks", "iou", "sam_tokens", "object_score_logits")
    out = {}
    for name, a, b in zip(names, ours, ref, strict=True):
        assert a.shape == b.shape, (name, a.shape, b.shape)
        out[name] = float(np.max(np.abs(np.asarray(a) - b)))
    return out


CASES = ["points", "boxes", "points_boxes", "mask", "none", "seg", "points_seg", "seg2"]


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_matches_torch(heads, case, multimask):
    cfg, pe, md, ours = heads
    embed, hr = _features(cfg)
    p = _prompts(cfg, case)
    ref = torch_reference(pe, md, embed, hr, multimask=multimask, **p)
    jp = {k: (None if v is None else jax.tree.map(jnp.asarray, v)) for k, v in p.items()}
    got = ours.decode(jnp.asarray(embed), [jnp.asarray(x) for x in hr], multimask=multimask, **jp)
    diffs = _max_diffs(got, ref)
    assert max(diffs.values()) <= TOL, diffs
    assert np.abs(ref[0]).max() > 1.0  # the comparison is not between near-zero tensors
    # __call__ is decode without the tokens
    masks, iou, obj = ours(
        jnp.asarray(embed), [jnp.asarray(x) for x in hr], multimask=multimask, **jp
    )
    np.testing.assert_array_equal(masks, got.masks)
    np.testing.assert_array_equal(obj, got.object_score_logits)


def test_injected_token_changes_the_mask(heads):
    """The [SEG] token is really read: two different tokens give different masks."""
    cfg, _, _, ours = heads
    embed, hr = _features(cfg)
    a = _prompts(cfg, "seg", seed=1)["extra_tokens"]
    b = _prompts(cfg, "seg", seed=2)["extra_tokens"]
    ma = ours(jnp.asarray(embed), [jnp.asarray(x) for x in hr], extra_tokens=jnp.asarray(a))[0]
    mb = ours(jnp.asarray(embed), [jnp.asarray(x) for x in hr], extra_tokens=jnp.asarray(b))[0]
    assert float(jnp.abs(ma - mb).max()) > 1e-2


def test_torch_training_mode_is_stability_selection_off(heads):
    """torch applies dynamic multimask only in eval mode; stability_selection=False is train."""
    cfg, pe, md, ours = heads
    assert cfg.dynamic_multimask_via_stability
    embed, hr = _features(cfg)
    p = _prompts(cfg, "points")
    jp = {k: (None if v is None else jax.tree.map(jnp.asarray, v)) for k, v in p.items()}
    args = (jnp.asarray(embed), [jnp.asarray(x) for x in hr])
    try:
        md.train()
        ref_train = torch_reference(pe, md, embed, hr, multimask=False, **p)
    finally:
        md.eval()
    ref_eval = torch_reference(pe, md, embed, hr, multimask=False, **p)
    got_train = ours.decode(*args, stability_selection=False, **jp)
    got_eval = ours.decode(*args, **jp)
    assert max(_max_diffs(got_train, ref_train).values()) <= TOL
    assert max(_max_diffs(got_eval, ref_eval).values()) <= TOL


def test_dynamic_multimask_selection_matches_torch(heads):
    """Hand-made logits: batch 0's single mask is stable (kept), batch 1's is not (the
    multimask output with the best IoU replaces it)."""
    _, _, md, _ = heads
    g = np.random.default_rng(3)
    logits = g.normal(size=(2, 4, 8, 8)).astype(np.float32)
    logits[0, 0] = np.where(g.random((8, 8)) > 0.5, 5.0, -5.0)  # far from +-delta: stable
    iou = g.random((2, 4)).astype(np.float32)
    ref_m, ref_i = md._dynamic_multimask_via_stability(
        torch.from_numpy(logits), torch.from_numpy(iou)
    )
    got_m, got_i = dynamic_multimask_via_stability(
        jnp.asarray(logits),
        jnp.asarray(iou),
        md.dynamic_multimask_stability_delta,
        md.dynamic_multimask_stability_thresh,
    )
    np.testing.assert_array_equal(got_m, ref_m.numpy())
    np.testing.assert_array_equal(got_i, ref_i.numpy())
    assert np.array_equal(got_m[0, 0], logits[0, 0]) and not np.array_equal(
        got_m[1, 0], logits[1, 0]
    )


def test_forward_sam_heads_no_prompt_path(heads):
    """SAM2Base._forward_sam_heads itself (on a stand-in holding the two torch heads): its
    low-res masks, high-res masks and IoU equal ours + apply_object_score + upscale_logits.
    The object-score bias is shifted so that sam2 keeps batch item 0's masks and replaces item
    1's with -1024 (with the raw weights both scores are negative and every logit is -1024)."""
    from sam2.modeling.sam2_base import SAM2Base

    cfg, pe, md, ours = heads
    embed, hr = _features(cfg, seed=5)
    args = (jnp.asarray(embed), [jnp.asarray(x) for x in hr])
    scores = np.asarray(ours(*args, multimask=True)[2]).ravel()
    md = copy.deepcopy(md)
    with torch.no_grad():
        md.pred_obj_score_head.layers[-1].bias += float(-scores.mean())
    shifted = from_torch_weights(cfg, torch_state_dict(pe, md))
    stand_in = types.SimpleNamespace(
        sam_prompt_embed_dim=cfg.transformer_dim,
        sam_image_embedding_size=cfg.image_embedding_size,
        sam_prompt_encoder=pe,
        sam_mask_decoder=md,
        pred_obj_scores=cfg.pred_obj_scores,
        image_size=cfg.input_image_size,
        obj_ptr_proj=torch.nn.Identity(),
        soft_no_obj_ptr=False,
        fixed_no_obj_ptr=False,
        no_obj_ptr=torch.zeros(1, cfg.transformer_dim),
    )
    with torch.no_grad():
        low, high, ious, *_rest, obj = SAM2Base._forward_sam_heads(
            stand_in,
            torch.from_numpy(embed),
            high_res_features=[torch.from_numpy(x) for x in hr],
            multimask_output=True,
        )
    masks, iou, obj_ours = shifted(*args, multimask=True)
    assert (np.asarray(obj_ours).ravel() > 0).tolist() == (scores > scores.mean()).tolist()
    assert (low.numpy() == -1024).any() and (low.numpy() != -1024).any()
    low_ours = apply_object_score(masks, obj_ours)
    np.testing.assert_allclose(low_ours, low.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(iou, ious.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(obj_ours, obj.numpy(), atol=TOL, rtol=0)
    s = cfg.input_image_size
    np.testing.assert_allclose(upscale_logits(low_ours, (s, s)), high.numpy(), atol=TOL, rtol=0)


def test_gradients_match_torch_autograd():
    """A BCE step's gradients w.r.t. the [SEG] token and every decoder parameter equal torch
    autograd's (torch in train mode: no stability selection). Depth 1 keeps the compile short."""
    cfg = dataclasses.replace(tiny(), depth=1)
    pe, md = build_torch_heads(cfg, seed=3)
    ours = from_torch_weights(cfg, torch_state_dict(pe, md))
    embed, hr = _features(cfg)
    seg = _prompts(cfg, "seg")["extra_tokens"]
    target = (np.repeat(np.repeat(embed[:, :1], 4, 2), 4, 3) > 0).astype(np.float32)

    md.train()
    t_seg = torch.from_numpy(seg).requires_grad_(True)
    sparse, dense = pe(
        points=(torch.zeros(B, 1, 2), -torch.ones(B, 1, dtype=torch.int32)), boxes=None, masks=None
    )
    logits = md(
        torch.from_numpy(embed),
        pe.get_dense_pe(),
        torch.cat([sparse, t_seg], 1),
        dense,
        False,
        False,
        [torch.from_numpy(x) for x in hr],
    )[0]
    torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.from_numpy(target)
    ).backward()
    ref = {f"sam_prompt_encoder.{k}": p.grad for k, p in pe.named_parameters()}
    ref.update({f"sam_mask_decoder.{k}": p.grad for k, p in md.named_parameters()})

    def loss(module, seg):
        out = module(
            jnp.asarray(embed),
            [jnp.asarray(x) for x in hr],
            extra_tokens=seg,
            stability_selection=False,
        )[0]
        return jnp.mean(jnp.logaddexp(0.0, out) - target * out)  # BCE with logits

    grads_m, grads_seg = nnx.jit(nnx.grad(loss, argnums=(0, 1)))(ours, jnp.asarray(seg))
    np.testing.assert_allclose(grads_seg, t_seg.grad.numpy(), atol=1e-6, rtol=1e-4)
    graphdef, _, rest = nnx.split(ours, nnx.Param, ...)
    got = export_torch_state_dict(nnx.merge(graphdef, grads_m, rest))
    # one absolute scale for all: some gradients are analytically zero (a key-projection bias
    # shifts every attention logit of a query equally) and both sides give rounding noise there
    scale = max(float(g.abs().max()) for g in ref.values() if g is not None)
    for key, g in ref.items():
        if g is None:  # not on the loss's path in torch (mask-prompt encoder, unused heads)
            assert not np.any(got[key]), key
            continue
        np.testing.assert_allclose(got[key], g.numpy(), atol=1e-5 * scale, rtol=1e-4, err_msg=key)
    assert float(np.abs(got["sam_mask_decoder.mask_tokens.weight"]).max()) > 0


def test_bad_inputs_name_the_argument(heads):
    cfg, _, _, ours = heads
    embed, hr = _features(cfg)
    e, h = jnp.asarray(embed), [jnp.asarray(x) for x in hr]
    with pytest.raises(ValueError, match="image_embed"):
        ours(e[:, :8], h)
    with pytest.raises(ValueError, match=r"high_res_feats\[1\]"):
        ours(e, [h[0], h[0]])
    with pytest.raises(ValueError, match="high_res_feats"):
        ours(e, None)
    with pytest.raises(ValueError, match="extra_tokens"):
        ours(e, h, extra_tokens=jnp.zeros((B, 1, 7)))
    with pytest.raises(ValueError, match="mask_input"):
        ours(e, h, mask_input=jnp.zeros((B, 1, 32, 32)))
    with pytest.raises(ValueError, match="points"):
        ours(e, h, points=(jnp.zeros((B, 2, 3)), jnp.zeros((B, 2), jnp.int32)))
    with pytest.raises(ValueError, match="boxes"):
        ours(e, h, boxes=jnp.zeros((B, 2, 2)))


def test_project_high_res_is_forward_images_projection(heads):
    """conv_s0 / conv_s1 as SAM2Base.forward_image applies them to raw FPN maps."""
    cfg, _, md, ours = heads
    g = np.random.default_rng(7)
    c, h = cfg.transformer_dim, cfg.image_embedding_size
    fpn0 = g.normal(size=(B, c, 4 * h, 4 * h)).astype(np.float32)
    fpn1 = g.normal(size=(B, c, 2 * h, 2 * h)).astype(np.float32)
    with torch.no_grad():
        ref0, ref1 = md.conv_s0(torch.from_numpy(fpn0)), md.conv_s1(torch.from_numpy(fpn1))
    got0, got1 = ours.mask_decoder.project_high_res(
        jnp.asarray(fpn0).transpose(0, 2, 3, 1), jnp.asarray(fpn1).transpose(0, 2, 3, 1)
    )
    np.testing.assert_allclose(got0.transpose(0, 3, 1, 2), ref0.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(got1.transpose(0, 3, 1, 2), ref1.numpy(), atol=TOL, rtol=0)
