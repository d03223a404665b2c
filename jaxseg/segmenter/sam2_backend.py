"""Meta's SAM2.1 video predictor (`sam2==1.1.0`, PyTorch) behind the MaskBackend interface.

Runs inside the sidecar process only (`python -m jaxseg.segmenter.sidecar_server`): importing
this module imports torch and sam2, which initialises hydra's global state
(`sam2/__init__.py` calls `initialize_config_module`), so it must never be imported by the JAX
process.

Only torchvision-free sam2 modules are used (`sam2.build_sam`, `sam2.sam2_video_predictor`);
`sam2.utils.transforms` / `SAM2ImagePredictor` need torchvision, which is not installed.

How requests map onto SAM2 (sam2 1.1.0 `SAM2VideoPredictor`):
- frames arrive in memory, so `init_state` gets them through a shim replacing
  `load_video_frames` with the same preprocessing as sam2's JPEG loader (PIL bicubic resize to
  image_size x image_size, /255, ImageNet mean/std);
- each object is prompted on the keyframe (`add_new_points_or_box`, or `add_new_mask`), then
  `propagate_in_video` runs forward from the keyframe and/or with `reverse=True`;
- image features (`image_features`): the frozen image encoder's output for chosen frames, as
  `_forward_sam_heads` takes it without memory, for the JAX mask decoder
  (jaxseg.models.sam2); cached per (video, frame), `embed_cache_frames` entries;
- decoder weights (`decoder_state_dict`): the `sam_prompt_encoder.*` / `sam_mask_decoder.*`
  tensors, so the JAX decoder can be loaded with exactly the sidecar's weights;
- batching: requests on the same (video, keyframe, direction) become objects of ONE inference
  state. SAM2 1.1.0 tracks each object independently (per-object memory, batch size 1 per
  object) and shares only the per-frame image-encoder features, so this is exact and runs the
  image encoder once per frame for the whole group instead of once per request.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from jaxseg.segmenter.interface import (
    InvalidRequestError,
    MaskRequest,
    MaskResult,
    RequestTimeoutError,
    UnknownVideoError,
    VideoHandle,
    empty_result,
    handle_for,
    validate_request,
)
from jaxseg.segmenter.transport import ImageFeatures, check_frame_indices

CONFIGS = {
    "t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}

# CI-sized hiera-t (hydra overrides of `sam2.1_hiera_t.yaml`): 4 hiera blocks, 1 memory-attention layer. A global-attention
# block may not open a stage (q-pool block), hence global_att_blocks=[3] with stages [1,1,2,1].
TINY_OVERRIDES = [
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.memory_attention.num_layers=1",
]

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


@dataclass
class Sam2Config:
    """model: t/s/b+/l (SAM2.1 hiera sizes) or "tiny" (CI-sized t, random init, no checkpoint).

    checkpoint: a SAM2.1 `.pt` (loaded with torch.load(weights_only=True)); required unless
    model == "tiny" or random_init is set (random weights at full size, for timing only).
    image_size: None keeps the config's 1024 (256 for "tiny"); must be a multiple of 16 >= 64
    (tiny verified at 64, 96, 128 and 256: prompt, propagation and image_features all run).
    max_videos: clips whose preprocessed frames stay resident (T x 3 x S x S float32 each:
    12.6 MB per frame at 1024 px), least recently used evicted.
    feature_cache_frames: keep the image-encoder output of up to this many frames (all clips)
    instead of sam2's one-frame cache, so requests with different keyframes on the same clip
    (a GRPO group) skip the encoder. Exact (the encoder is deterministic); memory per frame is
    about 5.3 MB at 256 px and 85 MB at 1024 px (fp32). 0 = sam2's own behaviour.
    embed_cache_frames: frames whose `image_features` output (numpy, fp32) is kept, least
    recently used evicted: 16.8 MB per frame at 1024 px (256x64x64 + 32x256x256 + 64x128x128
    floats), 1.05 MB at 256 px. 0 = no cache.
    fill_hole_area: 0 by default because the hole filler needs sam2's CUDA `_C` extension,
    which the PyPI wheel does not ship (without it sam2 warns and skips the step anyway).
    """

    model: str = "t"
    checkpoint: str | None = None
    device: str = "cpu"
    image_size: int | None = None
    random_init: bool = False
    seed: int = 0
    num_threads: int | None = None
    bf16: bool = False
    fill_hole_area: int = 0
    max_videos: int = 4
    feature_cache_frames: int = 0
    embed_cache_frames: int = 32
    extra_overrides: list[str] = field(default_factory=list)

    def hydra(self) -> tuple[str, list[str]]:
        if self.model not in (*CONFIGS, "tiny"):
            raise InvalidRequestError(
                f"sam2.model: {self.model!r} is not one of {[*CONFIGS, 'tiny']}"
            )
        overrides: list[str] = []
        size = self.image_size
        if self.model == "tiny":
            overrides += TINY_OVERRIDES
            size = size or 256
        if size is not None:
            if size % 16 or size < 64:
                raise InvalidRequestError(f"sam2.image_size: {size} is not a multiple of 16 >= 64")
            f = size // 16
            overrides += [
                f"++model.image_size={size}",
                f"++model.memory_attention.layer.self_attention.feat_sizes=[{f},{f}]",
                f"++model.memory_attention.layer.cross_attention.feat_sizes=[{f},{f}]",
            ]
        cfg = CONFIGS["t" if self.model == "tiny" else self.model]
        return cfg, overrides + list(self.extra_overrides)


def build_predictor(cfg: Sam2Config):
    """Build a SAM2VideoPredictor; weights from cfg.checkpoint or seeded random init."""
    import sam2.sam2_video_predictor as svp
    from sam2.build_sam import build_sam2_video_predictor

    svp.tqdm = lambda it, **_kw: it  # no per-propagation progress bars in the sidecar log

    if cfg.checkpoint is None and not (cfg.model == "tiny" or cfg.random_init):
        raise InvalidRequestError(
            f"sam2.checkpoint: model {cfg.model!r} needs a checkpoint path "
            "(e.g. sam2.1_hiera_tiny.pt); set random_init for random weights"
        )
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    config_file, overrides = cfg.hydra()
    torch.manual_seed(cfg.seed)
    predictor = build_sam2_video_predictor(
        config_file, ckpt_path=None, device=cfg.device, hydra_overrides_extra=overrides
    )
    # build_sam2_video_predictor appends fill_hole_area=8 after our overrides, so set it here.
    predictor.fill_hole_area = int(cfg.fill_hole_area)
    if cfg.checkpoint is not None:
        load_checkpoint(predictor, cfg.checkpoint)
    return predictor


def load_checkpoint(model: torch.nn.Module, path: str) -> None:
    """Strict load of a SAM2 `.pt` (a dict with a "model" state dict), as sam2's own loader."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise InvalidRequestError(f"sam2.checkpoint: no such file {path!r}") from e
    if not isinstance(blob, dict) or "model" not in blob:
        raise InvalidRequestError(f"sam2.checkpoint: {path!r} has no 'model' state dict")
    missing, unexpected = model.load_state_dict(blob["model"], strict=False)
    if missing or unexpected:
        raise InvalidRequestError(
            f"sam2.checkpoint: {path!r} does not match the config: "
            f"missing {list(missing)[:5]}..., unexpected {list(unexpected)[:5]}..."
        )


def preprocess_frames(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """[T, H, W, 3] uint8 -> [T, 3, S, S] float32, bit-identical to sam2's JPEG loader
    (`sam2.utils.misc._load_img_as_tensor` + normalisation) given the decoded frames."""
    t = frames.shape[0]
    images = torch.zeros(t, 3, image_size, image_size, dtype=torch.float32)
    for n in range(t):
        img = np.array(Image.fromarray(frames[n]).resize((image_size, image_size))) / 255.0
        images[n] = torch.from_numpy(img).permute(2, 0, 1)
    images -= torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    images /= torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return images


@contextlib.contextmanager
def _frames_loader(images: torch.Tensor, height: int, width: int):
    """Make `init_state` take in-memory frames (patches `sam2_video_predictor.load_video_frames`)."""
    import sam2.sam2_video_predictor as svp

    def load(**_kw):
        return images, height, width

    orig = svp.load_video_frames
    svp.load_video_frames = load
    try:
        yield
    finally:
        svp.load_video_frames = orig


class Sam2Backend:
    """MaskBackend over SAM2VideoPredictor. Not thread-safe: the sidecar calls it from one thread."""

    name = "sam2"

    def __init__(self, cfg: Sam2Config | None = None):
        self.cfg = cfg or Sam2Config(model="tiny")
        self.predictor = build_predictor(self.cfg)
        self._states: OrderedDict[str, dict] = OrderedDict()
        self._features: OrderedDict[tuple[str, int], tuple] = OrderedDict()
        self._embeds: OrderedDict[tuple[str, int], tuple[np.ndarray, ...]] = OrderedDict()
        if self.cfg.feature_cache_frames > 0:
            self._install_feature_cache()

    def _install_feature_cache(self) -> None:
        """Wrap `_get_image_feature`: seed sam2's one-entry cache from ours before each call
        and remember what it computed. Keyed by (video_id, frame)."""
        original = self.predictor._get_image_feature  # noqa: SLF001
        store, limit = self._features, self.cfg.feature_cache_frames

        def get_image_feature(state, frame_idx, batch_size):
            if "jaxseg_video_id" not in state:  # init_state's warm-up, before the id is set
                return original(state, frame_idx, batch_size)
            key = (state["jaxseg_video_id"], frame_idx)
            hit = store.get(key)
            if hit is not None:
                store.move_to_end(key)
                state["cached_features"] = {frame_idx: hit}
            out = original(state, frame_idx, batch_size)
            if hit is None:
                store[key] = state["cached_features"][frame_idx]
                while len(store) > limit:
                    store.popitem(last=False)
            return out

        self.predictor._get_image_feature = get_image_feature  # noqa: SLF001

    @property
    def image_size(self) -> int:
        return int(self.predictor.image_size)

    def register_video(self, frames: np.ndarray, video_id: str | None = None) -> VideoHandle:
        handle = handle_for(frames, video_id)
        if handle.video_id in self._states:
            self._states.move_to_end(handle.video_id)
            return handle
        images = preprocess_frames(frames, self.image_size)
        with _frames_loader(images.to(self.cfg.device), handle.height, handle.width):
            state = self.predictor.init_state(video_path="<in-memory>")
        state["jaxseg_video_id"] = handle.video_id
        if self.cfg.feature_cache_frames > 0 and 0 in state["cached_features"]:
            self._features[(handle.video_id, 0)] = state["cached_features"][0]  # the warm-up
        self._states[handle.video_id] = state
        while len(self._states) > self.cfg.max_videos:
            self._states.popitem(last=False)
        return handle

    def _state(self, handle: VideoHandle) -> dict:
        state = self._states.get(handle.video_id)
        if state is None:
            raise UnknownVideoError(handle.video_id)
        shape = (state["num_frames"], state["video_height"], state["video_width"])
        if shape != handle.shape:
            raise InvalidRequestError(
                f"request.video: handle shape {handle.shape} != registered {shape}"
            )
        self._states.move_to_end(handle.video_id)
        return state

    def segment(
        self, requests: Sequence[MaskRequest], deadline: float | None = None
    ) -> list[MaskResult]:
        """deadline: time.monotonic() value after which a group is abandoned (RequestTimeoutError)."""
        if self.cfg.num_threads:
            # OpenMP's thread count is per calling thread; the sidecar computes in a worker
            # thread, so apply it here too (measured: unset, the two paths differed up to 10x
            # on a loaded 2-core machine).
            torch.set_num_threads(self.cfg.num_threads)
        for i, r in enumerate(requests):
            validate_request(r, f"requests[{i}]")
        for r in requests:  # fail before any work if a video is missing
            self._state(r.video)
        results: list[MaskResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            if r.prompts:
                groups[(r.video.video_id, r.keyframe, r.direction)].append(i)
            else:
                results[i] = empty_result(r, self.name)
        for (_, keyframe, direction), idx in groups.items():
            group = [requests[i] for i in idx]
            for i, res in zip(idx, self._run_group(group, keyframe, direction, deadline)):
                results[i] = res
        return results  # type: ignore[return-value]

    def _autocast(self):
        if self.cfg.bf16:
            return torch.autocast(torch.device(self.cfg.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _run_group(
        self, group: list[MaskRequest], keyframe: int, direction: str, deadline: float | None
    ) -> list[MaskResult]:
        state = self._state(group[0].video)
        pred = self.predictor
        t, h, w = group[0].video.shape
        slots = [(ri, pi) for ri, r in enumerate(group) for pi in range(len(r.prompts))]
        masks = np.zeros((len(slots), t, h, w), dtype=bool)
        visited = np.zeros(t, dtype=bool)  # frames SAM2 actually yielded
        pred.reset_state(state)
        with torch.inference_mode(), self._autocast():
            for slot, (ri, pi) in enumerate(slots):
                p = group[ri].prompts[pi]
                if p.mask is not None:
                    pred.add_new_mask(state, keyframe, slot, np.asarray(p.mask, bool))
                else:
                    pred.add_new_points_or_box(
                        state,
                        frame_idx=keyframe,
                        obj_id=slot,
                        points=None if p.points is None else np.asarray(p.points, np.float32),
                        labels=None if p.point_labels is None else np.asarray(p.point_labels),
                        box=None if p.box is None else np.asarray(p.box, np.float32),
                    )
            passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
            for reverse in passes:
                for frame_idx, obj_ids, logits in pred.propagate_in_video(
                    state, start_frame_idx=keyframe, reverse=reverse
                ):
                    order = [int(o) for o in obj_ids]
                    visited[frame_idx] = True
                    masks[order, frame_idx] = (logits[:, 0] > 0.0).cpu().numpy()
                    if deadline is not None and time.monotonic() > deadline:
                        pred.reset_state(state)
                        raise RequestTimeoutError(
                            f"propagation of {len(group)} request(s) passed its deadline "
                            f"at frame {frame_idx}"
                        )
        pred.reset_state(state)
        out, start = [], 0
        for r in group:
            n = len(r.prompts)
            out.append(
                MaskResult(
                    obj_ids=tuple(p.obj_id for p in r.prompts),
                    object_masks=masks[start : start + n],
                    covered=visited.copy(),
                    backend=self.name,
                )
            )
            start += n
        return out

    def image_features(self, handle: VideoHandle, frames: Sequence[int]) -> ImageFeatures:
        """The memory-free SAM2 features of `frames` of a registered clip (see ImageFeatures)."""
        state = self._state(handle)
        frames = check_frame_indices(frames, int(state["num_frames"]))
        if self.cfg.num_threads:
            torch.set_num_threads(self.cfg.num_threads)  # per calling thread, as in segment
        per_frame, cached = [], []
        for f in frames:
            key = (handle.video_id, f)
            hit = self._embeds.get(key)
            cached.append(hit is not None)
            if hit is None:
                hit = self._frame_features(state, f)
                if self.cfg.embed_cache_frames > 0:
                    self._embeds[key] = hit
                    while len(self._embeds) > self.cfg.embed_cache_frames:
                        self._embeds.popitem(last=False)
            else:
                self._embeds.move_to_end(key)
            per_frame.append(hit)
        embed, hr0, hr1 = (np.stack(x) for x in zip(*per_frame, strict=True))
        return ImageFeatures(embed, hr0, hr1, np.asarray(cached, bool))

    def _frame_features(self, state: dict, frame: int) -> tuple[np.ndarray, ...]:
        """([C, h, w], [C/8, 4h, 4w], [C/4, 2h, 2w]) float32 for one frame: the video
        predictor's backbone output (`_get_image_feature` -> `forward_image` projects the high-res
        levels with conv_s0/conv_s1) with `no_mem_embed` added to the top level, exactly as
        `SAM2ImagePredictor.set_image` prepares `_features`."""
        pred = self.predictor
        with torch.inference_mode(), self._autocast():
            _, _, feats, _, sizes = pred._get_image_feature(state, frame, 1)  # noqa: SLF001
            feats = list(feats)
            if pred.directly_add_no_mem_embed:
                feats[-1] = feats[-1] + pred.no_mem_embed
            maps = [
                x.permute(1, 2, 0).reshape(x.shape[1], x.shape[2], *hw)[0]
                for x, hw in zip(feats, sizes, strict=True)
            ]
        hr0, hr1, embed = (m.float().cpu().numpy() for m in maps)
        return embed, hr0, hr1

    def decoder_state_dict(self) -> dict[str, np.ndarray]:
        """sam_prompt_encoder.* / sam_mask_decoder.* tensors as float32 numpy (torch layouts)."""
        heads = ("sam_prompt_encoder.", "sam_mask_decoder.")
        return {
            k: v.detach().float().cpu().numpy()
            for k, v in self.predictor.state_dict().items()
            if k.startswith(heads)
        }

    def close(self) -> None:
        self._states.clear()
        self._embeds.clear()
