"""`Qwen3VLForConditionalGeneration` in nnx: vision tower (+ DeepStack) + multimodal merge +
Qwen3 decoder + lm_head.

The policy interface every family keeps (`jaxseg.models.family`):

    hidden_or_logits, cache = model.forward(input_ids, attention_mask, position_ids,
                                            pixel_values=..., image_layout=...,
                                            kv_cache=..., return_hidden=False)
    cache = model.init_cache(batch, length)

Host-side pieces (`vision_layout`, `get_rope_index`) are computed before jit. `__call__`
mirrors transformers' forward (same keyword names) for eager parity checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseg.models.kv_cache import KVCache
from jaxseg.models.layers import Linear
from jaxseg.models.qwen2_5_vl.model import _host_array, merge_features

from .config import Qwen3VLConfig
from .rope import get_rope_index
from .text import TextModel
from .vision import VisionTransformer
from .vision_layout import VisionLayout, vision_layout


class Qwen3VLForConditionalGeneration(nnx.Module):
    """The whole policy. Attributes mirror transformers' module tree (see weights.py):
    `visual`, `language_model` (embed_tokens, layers, norm) and `lm_head` (None when tied)."""

    def __init__(
        self,
        config: Qwen3VLConfig,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
        remat: str = "none",
    ):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        if config.vision.out_hidden_size != config.text.hidden_size:
            raise ValueError(
                f"vision out_hidden_size {config.vision.out_hidden_size} != text hidden_size "
                f"{config.text.hidden_size}"
            )
        self.config = config
        self.dtype = dtype
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.visual = VisionTransformer(config.vision, remat=remat, **kw)
        self.language_model = TextModel(config.text, remat=remat, **kw)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else Linear(
                config.text.hidden_size,
                config.text.vocab_size,
                use_bias=False,
                axes=("embed", "vocab"),
                **kw,
            )
        )

    # --------------------------------------------------------------------- vision
    def _layout(self, grid_thw, layout: VisionLayout | None, name: str) -> VisionLayout:
        if layout is not None:
            return layout
        if grid_thw is None:
            raise ValueError(f"pixel values given without {name}")
        return vision_layout(_host_array(grid_thw, name), self.config.vision)

    def _check_count(self, input_ids, token_id: int, layout: VisionLayout, what: str) -> None:
        if isinstance(input_ids, jax.core.Tracer):
            return  # counts are checked when building the batch on host
        n_tokens = int((np.asarray(input_ids) == token_id).sum())
        n_features = layout.real_patches // self.config.vision.spatial_merge_unit
        if n_tokens != n_features:
            raise ValueError(
                f"{what} features and {what} tokens do not match: {n_tokens} placeholder "
                f"tokens, {n_features} features"
            )

    def embed_and_merge(
        self,
        input_ids: jax.Array,
        pixel_values: jax.Array | None = None,
        image_grid_thw=None,
        pixel_values_videos: jax.Array | None = None,
        video_grid_thw=None,
        *,
        image_layout: VisionLayout | None = None,
        video_layout: VisionLayout | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Token embeddings `[B, L, D]` with image/video features at their placeholders, and the
        DeepStack addends `[K, B, L, D]` (zeros off the visual positions; None without media
        or without DeepStack levels)."""
        cfg = self.config
        embeds = self.language_model.embed_tokens(input_ids)
        deepstack = None
        n_deep = len(cfg.vision.deepstack_visual_indexes)
        if n_deep and (pixel_values is not None or pixel_values_videos is not None):
            deepstack = [jnp.zeros_like(embeds) for _ in range(n_deep)]
        for pixels, grid, layout, token, what in (
            (pixel_values, image_grid_thw, image_layout, cfg.image_token_id, "Image"),
            (pixel_values_videos, video_grid_thw, video_layout, cfg.video_token_id, "Video"),
        ):
            if pixels is None:
                continue
            layout = self._layout(grid, layout, f"{what.lower()}_grid_thw")
            self._check_count(input_ids, token, layout, what)
            feats, deep = self.visual(pixels, layout)
            embeds = merge_features(embeds, input_ids, token, feats)
            if deepstack is not None:
                deepstack = [
                    merge_features(d, input_ids, token, f) for d, f in zip(deepstack, deep)
                ]
        return embeds, (None if deepstack is None else jnp.stack(deepstack))

    # --------------------------------------------------------------------- text
    def compute_logits(self, hidden_states: jax.Array) -> jax.Array:
        """lm_head (or the tied embedding) on `[..., hidden]`."""
        if self.lm_head is None:
            return self.language_model.embed_tokens.attend(hidden_states)
        return self.lm_head(hidden_states)

    def init_cache(self, batch: int, length: int, dtype=None) -> KVCache:
        """An empty `KVCache` of `length` slots for `batch` rows."""
        return KVCache.create(self.config.text, batch, length, dtype=dtype or self.dtype)

    def forward(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None,
        position_ids: jax.Array,
        *,
        pixel_values: jax.Array | None = None,
        image_layout: VisionLayout | None = None,
        pixel_values_videos: jax.Array | None = None,
        video_layout: VisionLayout | None = None,
        kv_cache: KVCache | None = None,
        return_hidden: bool = False,
    ) -> tuple[jax.Array, KVCache | None]:
        """Teacher-forced pass, prefill into `kv_cache`, or a decode step (tokens only):
        logits `[B, L, V]` (or final hidden states `[B, L, D]` with `return_hidden`) and the
        updated cache. `position_ids [3, B, L]` from `get_rope_index` (host)."""
        embeds, deepstack = self.embed_and_merge(
            input_ids,
            pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_layout=image_layout,
            video_layout=video_layout,
        )
        hidden, cache = self.language_model(
            embeds, position_ids, attention_mask, kv_cache, deepstack
        )
        return (hidden if return_hidden else self.compute_logits(hidden)), cache

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        pixel_values: jax.Array | None = None,
        image_grid_thw=None,
        pixel_values_videos: jax.Array | None = None,
        video_grid_thw=None,
        position_ids: jax.Array | None = None,
        *,
        image_layout: VisionLayout | None = None,
        video_layout: VisionLayout | None = None,
    ) -> jax.Array:
        """Logits `[B, L, vocab]`, the function transformers' forward computes (positions from
        `get_rope_index` on host when media are given, else `arange(L)` on all three rows)."""
        if position_ids is None:
            if image_grid_thw is not None or video_grid_thw is not None:
                position_ids, _ = get_rope_index(
                    _host_array(input_ids, "input_ids"),
                    None if image_grid_thw is None else _host_array(image_grid_thw, "grid"),
                    None if video_grid_thw is None else _host_array(video_grid_thw, "grid"),
                    attention_mask=(
                        None if attention_mask is None else _host_array(attention_mask, "mask")
                    ),
                    config=self.config,
                )
            else:
                b, length = input_ids.shape
                position_ids = jnp.broadcast_to(jnp.arange(length), (3, b, length))
        if pixel_values is not None and image_layout is None:
            image_layout = self._layout(image_grid_thw, None, "image_grid_thw")
        if pixel_values_videos is not None and video_layout is None:
            video_layout = self._layout(video_grid_thw, None, "video_grid_thw")
        logits, _ = self.forward(
            input_ids,
            attention_mask,
            jnp.asarray(position_ids),
            pixel_values=pixel_values,
            image_layout=image_layout,
            pixel_values_videos=pixel_values_videos,
            video_layout=video_layout,
        )
        return logits
