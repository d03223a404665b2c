"""Prompt builders and transformers references shared by the sampler tests."""

from __future__ import annotations

import numpy as np
import torch

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
    """transformers `generate(do_sample=False)` on a left-padded batch: new tokens `[B, T]`."""
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
            **hf_media_kwargs(prompts),
        )
    return out[:, ids.shape[1] :].numpy()
