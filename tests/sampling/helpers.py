"""Prompt builders and transformers references shared by the sampler tests."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from jaxseg.models.qwen2_5_vl import get_rope_index, vision_layout
from jaxseg.sampling import Prompt

from .conftest import media_tokens


def make_prompt(tokenizer, special, media, kinds=(), text="Find the red circle.", tail="\n"):
    """A chat-like prompt: text, then each media item of `kinds`, then `tail` text."""
    ids = tokenizer.encode("<|im_start|>user\n" + text, add_special_tokens=False)
    images, igrids, videos, vgrids = [], [], [], []
    for kind in kinds:
        pv, grid = media[kind]
        is_video = kind == "video"
        token = special["video_token_id" if is_video else "image_token_id"]
        ids += media_tokens(grid[0], token, special)
        (videos if is_video else images).append(pv)
        (vgrids if is_video else igrids).append(grid)
    ids += tokenizer.encode(tail, add_special_tokens=False)
    return Prompt(
        input_ids=ids,
        pixel_values=np.concatenate(images) if images else None,
        image_grid_thw=np.concatenate(igrids) if igrids else None,
        pixel_values_videos=np.concatenate(videos) if videos else None,
        video_grid_thw=np.concatenate(vgrids) if vgrids else None,
        second_per_grid_ts=[1.0] * len(videos) if videos else None,
    )


def hf_media_kwargs(prompts):
    """transformers kwargs for the media of `prompts` (concatenated in row order)."""
    kw = {}
    for pv_name, grid_name in (
        ("pixel_values", "image_grid_thw"),
        ("pixel_values_videos", "video_grid_thw"),
    ):
        pvs = [getattr(p, pv_name) for p in prompts if getattr(p, pv_name) is not None]
        if pvs:
            kw[pv_name] = torch.tensor(np.concatenate(pvs))
            grids = [getattr(p, grid_name) for p in prompts if getattr(p, grid_name) is not None]
            kw[grid_name] = torch.tensor(np.concatenate(grids))
    secs = [s for p in prompts if p.second_per_grid_ts is not None for s in p.second_per_grid_ts]
    if secs:
        kw["second_per_grid_ts"] = torch.tensor(secs)
    return kw


def left_pad(rows, pad_id):
    length = max(len(r) for r in rows)
    ids = np.full((len(rows), length), pad_id, np.int64)
    mask = np.zeros((len(rows), length), np.int64)
    for b, r in enumerate(rows):
        ids[b, length - len(r) :] = r
        mask[b, length - len(r) :] = 1
    return ids, mask


def hf_greedy(model, prompts, max_new_tokens, special):
    """transformers `generate(do_sample=False)` on a left-padded batch: new tokens `[B, T]` and
    their log-probs `[B, T]` from generate's own logits (log_softmax at temperature 1)."""
    ids, mask = left_pad([list(p.input_ids) for p in prompts], special["pad_token_id"])
    ids_t = torch.tensor(ids)
    types = (ids_t == special["image_token_id"]).long() + 2 * (
        ids_t == special["video_token_id"]
    ).long()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids_t,
            attention_mask=torch.tensor(mask),
            mm_token_type_ids=types,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=special["pad_token_id"],
            eos_token_id=None,
            output_logits=True,
            return_dict_in_generate=True,
            **hf_media_kwargs(prompts),
        )
    tokens = out.sequences[:, ids.shape[1] :]
    logp = torch.log_softmax(torch.stack(out.logits, 1).float(), -1)
    picked = logp.gather(-1, tokens[..., None])[..., 0]
    return tokens.numpy(), picked.numpy()


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _forward(graphdef, weights, ids, mask, positions, pv, image_layout, pvv, video_layout):
    model = nnx.merge(graphdef, weights)
    return model(
        ids,
        attention_mask=mask,
        pixel_values=pv,
        pixel_values_videos=pvv,
        position_ids=positions,
        image_layout=image_layout,
        video_layout=video_layout,
    )


def trainer_logits(model, histories, pixel_values=None, pixel_values_videos=None, width=128):
    """The trainer's teacher-forced forward over whole conversations: rows left-padded to
    `width`, M-RoPE positions from `get_rope_index` over each full row (with the padding
    mask), jitted. pixel values: every row's media concatenated in row order. `[B, width, V]`."""
    cfg = model.config
    ids, mask = left_pad([h.ids for h in histories], 0)
    ids = np.pad(ids, ((0, 0), (width - ids.shape[1], 0)))
    mask = np.pad(mask, ((0, 0), (width - mask.shape[1], 0)))
    igrids = [g for h in histories for g in h.image_grids]
    vgrids = [g for h in histories for g in h.video_grids]
    secs = [s for h in histories for s in h.seconds]
    positions, _ = get_rope_index(
        ids,
        np.stack(igrids) if igrids else None,
        np.stack(vgrids) if vgrids else None,
        secs or None,
        mask,
        config=cfg,
    )
    graphdef, weights = nnx.split(model)
    return _forward(
        graphdef,
        weights,
        jnp.asarray(ids),
        jnp.asarray(mask),
        jnp.asarray(positions),
        None if pixel_values is None else jnp.asarray(pixel_values),
        vision_layout(np.stack(igrids), cfg.vision) if igrids else None,
        None if pixel_values_videos is None else jnp.asarray(pixel_values_videos),
        vision_layout(np.stack(vgrids), cfg.vision) if vgrids else None,
    )


def hf_logits(hf_model, histories, special, pixel_values=None, pixel_values_videos=None):
    """transformers' forward over whole conversations, rows left-padded: `[B, L, V]` numpy."""
    ids, mask = left_pad([h.ids for h in histories], special["pad_token_id"])
    ids_t = torch.tensor(ids)
    types = (ids_t == special["image_token_id"]).long() + 2 * (
        ids_t == special["video_token_id"]
    ).long()
    kw = {}
    igrids = [g for h in histories for g in h.image_grids]
    vgrids = [g for h in histories for g in h.video_grids]
    if igrids:
        kw["pixel_values"] = torch.tensor(pixel_values)
        kw["image_grid_thw"] = torch.tensor(np.stack(igrids))
    if vgrids:
        kw["pixel_values_videos"] = torch.tensor(pixel_values_videos)
        kw["video_grid_thw"] = torch.tensor(np.stack(vgrids))
        kw["second_per_grid_ts"] = torch.tensor([s for h in histories for s in h.seconds])
    with torch.no_grad():
        out = hf_model(
            input_ids=ids_t, attention_mask=torch.tensor(mask), mm_token_type_ids=types, **kw
        )
    return out.logits.float().numpy()


def completion_logprobs(logits, histories, lengths):
    """log p of the last `lengths[b]` tokens of each left-padded row under `logits [B, L, V]`
    (temperature 1, full vocabulary). List of `[n_b]` arrays."""
    logp = np.asarray(jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1))
    out = []
    for b, (h, n) in enumerate(zip(histories, lengths, strict=True)):
        ids = np.asarray(h.ids[-n:])
        rows = logp[b, logp.shape[1] - n - 1 : logp.shape[1] - 1]
        out.append(rows[np.arange(n), ids])
    return out


def concat(arrays):
    arrays = [a for a in arrays if a is not None]
    return np.concatenate(arrays) if arrays else None
