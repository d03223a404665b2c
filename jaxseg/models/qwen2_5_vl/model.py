"""`Qwen2_5_VLForConditionalGeneration` in nnx: vision tower + multimodal merge + decoder + lm_head.

Call signatures mirror transformers (same keyword names). Everything that depends on the
*values* of `image_grid_thw` / `video_grid_thw` (window permutation, segment ids, rotary ids,
M-RoPE positions) is computed on host with numpy. The eager call computes them for you from
concrete arrays; under `jax.jit` pass them precomputed (`image_layout=`/`video_layout=` from
`vision_layout(...)` and `position_ids=` from `get_rope_index(...)`), or use the split API:

    embeds = model.embed_and_merge(input_ids, pixel_values, image_layout=..., ...)
    logits, cache = model.decode(embeds, position_ids, attention_mask, kv_cache)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..layers import Linear
from .config import Qwen2_5_VLConfig
from .rope import get_rope_index
from .text import KVCache, TextModel
from .vision import VisionTransformer
from .vision_layout import VisionLayout, vision_layout


def _host_array(x, name: str) -> np.ndarray:
    """A concrete numpy copy of `x`, or a clear error when `x` is traced (inside jit)."""
    if isinstance(x, jax.core.Tracer):
        raise ValueError(
            f"{name} is traced (called under jit?): it is needed on host. Compute it before "
            "jit: pass image_layout/video_layout=vision_layout(grid_thw, config.vision) and "
            "position_ids=get_rope_index(...)[0]."
        )
    return np.asarray(x)


def merge_features(
    inputs_embeds: jax.Array, input_ids: jax.Array, token_id: int, features: jax.Array
) -> jax.Array:
    """Writes `features` rows, in order, at the positions where `input_ids == token_id`
    (row-major over the batch), like torch `masked_scatter`. jit-friendly (cumsum + gather);
    `features` may carry trailing padding rows, which are never read."""
    b, length, d = inputs_embeds.shape
    flat_mask = (input_ids == token_id).reshape(-1)
    idx = jnp.clip(jnp.cumsum(flat_mask) - 1, 0, features.shape[0] - 1)
    gathered = features.astype(inputs_embeds.dtype)[idx]
    out = jnp.where(flat_mask[:, None], gathered, inputs_embeds.reshape(-1, d))
    return out.reshape(b, length, d)


class Qwen2_5_VLForConditionalGeneration(nnx.Module):
    """The whole policy. Attributes mirror transformers' module tree (see weights.py):
    `visual`, `language_model` (embed_tokens, layers, norm) and `lm_head` (None when tied)."""

    def __init__(
        self,
        config: Qwen2_5_VLConfig,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
        remat: str = "none",
    ):
        """`remat`: per-block rematerialisation of the training forward in the vision tower
        and the decoder, a name of remat.REMAT_POLICIES ("none", "dots_saveable", "full")."""
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

    def get_image_features(
        self, pixel_values: jax.Array, image_grid_thw=None, *, layout: VisionLayout | None = None
    ) -> jax.Array:
        """Merged image features `[num_image_tokens(+pad), hidden]`, in placeholder order."""
        return self.visual(pixel_values, self._layout(image_grid_thw, layout, "image_grid_thw"))

    def get_video_features(
        self,
        pixel_values_videos: jax.Array,
        video_grid_thw=None,
        *,
        layout: VisionLayout | None = None,
    ) -> jax.Array:
        """Merged video features `[num_video_tokens(+pad), hidden]`, in placeholder order."""
        return self.visual(
            pixel_values_videos, self._layout(video_grid_thw, layout, "video_grid_thw")
        )

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
    ) -> jax.Array:
        """Token embeddings `[B, L, hidden]` with image/video features at their placeholders."""
        cfg = self.config
        embeds = self.language_model.embed_tokens(input_ids)
        if pixel_values is not None:
            layout = self._layout(image_grid_thw, image_layout, "image_grid_thw")
            self._check_count(input_ids, cfg.image_token_id, layout, "Image")
            feats = self.visual(pixel_values, layout)
            embeds = merge_features(embeds, input_ids, cfg.image_token_id, feats)
        if pixel_values_videos is not None:
            layout = self._layout(video_grid_thw, video_layout, "video_grid_thw")
            self._check_count(input_ids, cfg.video_token_id, layout, "Video")
            feats = self.visual(pixel_values_videos, layout)
            embeds = merge_features(embeds, input_ids, cfg.video_token_id, feats)
        return embeds

    # --------------------------------------------------------------------- text
    def compute_logits(self, hidden_states: jax.Array) -> jax.Array:
        """lm_head (or the tied embedding) on `[..., hidden]`."""
        if self.lm_head is None:
            return self.language_model.embed_tokens.attend(hidden_states)
        return self.lm_head(hidden_states)

    def decode(
        self,
        inputs_embeds: jax.Array,
        position_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        kv_cache: KVCache | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """Decoder + lm_head on precomputed embeddings: logits `[B, L, vocab]` and new cache.

        Prefill: `kv_cache=KVCache.create(...)` (index 0), positions from `get_rope_index`.
        Decode step: L = 1, positions `cache.index + rope_deltas` on all 3 rows."""
        hidden, cache = self.language_model(inputs_embeds, position_ids, attention_mask, kv_cache)
        return self.compute_logits(hidden), cache

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
        """The policy interface (jaxseg.models.family): teacher-forced pass, prefill into
        `kv_cache`, or a decode step (tokens only). Logits `[B, L, V]` (or final hidden states
        `[B, L, D]` with `return_hidden`) and the updated cache."""
        embeds = self.embed_and_merge(
            input_ids,
            pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_layout=image_layout,
            video_layout=video_layout,
        )
        hidden, cache = self.language_model(embeds, position_ids, attention_mask, kv_cache)
        return (hidden if return_hidden else self.compute_logits(hidden)), cache

    # --------------------------------------------------------------------- full forward
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        pixel_values: jax.Array | None = None,
        image_grid_thw=None,
        pixel_values_videos: jax.Array | None = None,
        video_grid_thw=None,
        second_per_grid_ts=None,
        position_ids: jax.Array | None = None,
        *,
        image_layout: VisionLayout | None = None,
        video_layout: VisionLayout | None = None,
    ) -> jax.Array:
        """Logits `[B, L, vocab]`, the function transformers' forward computes.

        When `position_ids` is None they are computed like transformers does: with media,
        `get_rope_index` on host (needs concrete input_ids/grids); text only, `arange(L)` on
        all three rows (transformers ignores the padding mask there; RoPE is relative, so
        left padding does not change the logits of real tokens)."""
        if position_ids is None:
            if image_grid_thw is not None or video_grid_thw is not None:
                position_ids, _ = get_rope_index(
                    _host_array(input_ids, "input_ids"),
                    None if image_grid_thw is None else _host_array(image_grid_thw, "grid"),
                    None if video_grid_thw is None else _host_array(video_grid_thw, "grid"),
                    second_per_grid_ts,
                    None if attention_mask is None else _host_array(attention_mask, "mask"),
                    config=self.config,
                )
            else:
                b, length = input_ids.shape
                position_ids = jnp.broadcast_to(jnp.arange(length), (3, b, length))
        embeds = self.embed_and_merge(
            input_ids,
            pixel_values,
            image_grid_thw,
            pixel_values_videos,
            video_grid_thw,
            image_layout=image_layout,
            video_layout=video_layout,
        )
        logits, _ = self.decode(embeds, jnp.asarray(position_ids), attention_mask)
        return logits
