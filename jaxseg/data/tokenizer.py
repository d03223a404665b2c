"""A small Qwen2.5-VL-compatible tokenizer and processor for the synthetic world.

Tiny models trained on CPU need a tiny vocabulary, but the rest of the stack (chat template,
placeholder expansion, M-RoPE positions, special-token roles) must be Qwen2.5-VL's. So:

- a byte-level BPE (Qwen2's pre-tokenizer regex, digits split one by one) is trained with
  HF `tokenizers` on text from the synthetic grammar and on every message the answer
  protocols (jaxseg.protocols) produce when the scripted oracle plays them, then wrapped in
  `transformers.Qwen2Tokenizer`; any text still round-trips exactly (byte fallback). Every
  word of that text ends up a single token (with its leading space), so a sequence costs
  about one token per word, digit, space before a number and punctuation run; the learned
  vocabulary saturates near 1000 tokens, below the default bound;
- Qwen2.5-VL's special tokens keep their names and roles (<|im_start|>, <|im_end|> = eos,
  <|endoftext|> = pad, <|vision_start|>, <|vision_end|>, <|image_pad|>, <|video_pad|>, ...);
  their ids follow the BPE vocabulary in Qwen's order, so ids differ from Qwen's but roles do not;
- protocol tags (<think>, <answer>, <select>, <VTG>, <RefSeg>, [SEG], <box>, ...) are single added
  (non-special) tokens, so they survive `skip_special_tokens=True`, as Qwen's <tool_call> does;
- the chat template is Qwen2.5-VL's (Qwen/Qwen2.5-VL-*-Instruct chat_template.json);
- `build_processor` wraps it in a `Qwen2_5_VLProcessor` with a Qwen2-VL image processor sized
  for 128-160 px frames. Without torchvision (this project's CPU environment) transformers
  cannot build any video processor; the processor is then image-only (same class family, same
  image placeholder expansion) and the video processor config is still saved so an
  environment with torchvision loads the full processor via `AutoProcessor`.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
PROTOCOL_TAGS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<select>",
    "</select>",
    "<VTG>",
    "</VTG>",
    "<RefSeg>",
    "</RefSeg>",
    "[SEG]",
    "<box>",
    "</box>",
)
VOCAB_LIMIT = 4096

# Qwen2.5-VL-Instruct chat_template.json (identical to Qwen2-VL's).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Pixel budgets (Qwen2-VL smart_resize: multiples of 28 px, area clamped to [min, max]).
# 128 px -> 140x140 -> 25 image tokens; 160 px -> 168x168 -> 36. Video frames get a lower
# budget (112x112 -> 16 tokens per 2 frames), like VideoSEG-O3's low-res temporal frames.
IMAGE_MIN_PIXELS = 4 * 28 * 28
IMAGE_MAX_PIXELS = 64 * 28 * 28
VIDEO_MIN_PIXELS = 4 * 28 * 28
VIDEO_MAX_PIXELS = 16 * 28 * 28
# CLIP statistics, as in Qwen2-VL's preprocessor_config.json


def chat_corpus() -> list[str]:
    """The chat template's fixed strings and the protocol tags in context."""
    return [
        "You are a helpful assistant.",
        "system", "user", "assistant", "Picture 1: ", "Video 1: ",
        "<think></think><answer></answer>", "<answer>no target</answer>",
        "<tool_call>\n</tool_call>",
    ]  # fmt: skip


def protocol_corpus(videos: int = 6, seed: int = 0) -> list[str]:
    """Every message of the seed methods' protocols (jaxseg.protocols) played by the scripted
    oracle on `videos` synthetic videos: system prompts, the user turns' templates with
    their frame labels, and the assistant's reasoning and answers (tags, JSON keys,
    numbers), i.e. what SFT and GRPO sequences are made of. Generated through the protocol
    modules, so a changed template changes the corpus. Deterministic in (videos, seed)."""
    from jaxseg.data.synth import SynthConfig, generate_video
    from jaxseg.protocols.episode import play_episodes
    from jaxseg.protocols.policy import message_text
    from jaxseg.protocols.registry import PROTOCOLS, make_protocol
    from jaxseg.protocols.sample import from_synth
    from jaxseg.protocols.scripted import OraclePolicy

    class RecordingOracle(OraclePolicy):
        def start(self, conversations):
            self.state = super().start(conversations)
            return self.state

    cfg = SynthConfig.preset("medium", size=64)
    samples = []
    for v in range(videos):
        video = generate_video(seed, "tokenizer", v, cfg)
        samples += [from_synth(video, q, key=f"{v}/{q}") for q in range(len(video.queries))]
    texts: list[str] = []
    for name in sorted(PROTOCOLS):
        protocol = make_protocol(name)
        policy = RecordingOracle(protocol, samples)
        play_episodes(protocol, policy, samples, seed=seed)
        texts += [message_text(m) for conv in policy.state.conversations for m in conv]
    return texts


def grammar_corpus(videos: int = 60, seed: int = 0) -> list[str]:
    """Every query sentence the synthetic grammar produces on `videos` small scenes, plus
    the world's vocabulary in singular and plural. Deterministic in (videos, seed)."""
    from jaxseg.data.synth.queries import candidates, noun_phrase
    from jaxseg.data.synth.render import render, sample_background
    from jaxseg.data.synth.scene_graph import build_scene_graph
    from jaxseg.data.synth.simulate import simulate
    from jaxseg.data.synth.world import COLOUR_NAMES, SHAPES, SIZE_NAMES, SynthConfig

    cfg = SynthConfig(size=48)
    texts: list[str] = []
    for k in range(videos):
        rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(k,)))
        scene = simulate(rng, cfg)
        background, _ = sample_background(rng, cfg)
        graph = build_scene_graph(scene, render(scene, background))
        texts += [c["exp"] for c in candidates(graph, rng, cfg)]
    for shape in SHAPES:
        for colour in COLOUR_NAMES:
            for size in SIZE_NAMES:
                f = {"size": size, "colour": colour, "shape": shape}
                texts += [noun_phrase(f), noun_phrase(f, plural=True)]
    return texts


def default_corpus() -> list[str]:
    """What `build_tokenizer` trains on by default: chat strings, grammar, protocols."""
    return chat_corpus() + grammar_corpus() + protocol_corpus()


def _without_added_tokens(texts: Iterable[str]) -> Iterator[str]:
    """The pieces of `texts` between special tokens and protocol tags: what the BPE model sees
    at encoding time, where added tokens are split off first (else "<think>In" would train
    the pre-token ">In" and leave "In" unmerged)."""
    added = re.compile("|".join(re.escape(t) for t in QWEN_SPECIAL_TOKENS + PROTOCOL_TAGS))
    for text in texts:
        yield from (piece for piece in added.split(text) if piece)


def _train_bpe(
    texts: Iterable[str], vocab_size: int
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_without_added_tokens(texts), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def build_tokenizer(vocab_size: int = 2048, texts: Iterable[str] | None = None):
    """A `transformers.Qwen2Tokenizer` with at most `vocab_size` (<= VOCAB_LIMIT) tokens in
    all; fewer when the corpus runs out of pairs to merge (the default corpus does, near 1000)."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    if not 256 + len(QWEN_SPECIAL_TOKENS) + len(PROTOCOL_TAGS) < vocab_size <= VOCAB_LIMIT:
        lo = 256 + len(QWEN_SPECIAL_TOKENS) + len(PROTOCOL_TAGS)
        raise ValueError(f"vocab_size must be in ({lo}, {VOCAB_LIMIT}], got {vocab_size}")
    corpus = list(texts) if texts is not None else default_corpus()
    n_added = len(QWEN_SPECIAL_TOKENS) + len(PROTOCOL_TAGS)
    vocab, merges = _train_bpe(corpus, vocab_size - n_added)
    for token in QWEN_SPECIAL_TOKENS + PROTOCOL_TAGS:
        vocab[token] = len(vocab)
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(QWEN_SPECIAL_TOKENS),
        model_max_length=32768,
    )
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PROTOCOL_TAGS])
    tok.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return tok


def special_token_ids(tokenizer) -> dict[str, int]:
    """The ids a Qwen2.5-VL model config needs (image_token_id, video_token_id, ...)."""
    ids = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
        "eos_token_id": "<|im_end|>",
        "pad_token_id": "<|endoftext|>",
        "bos_token_id": "<|endoftext|>",
    }
    return {k: int(tokenizer.convert_tokens_to_ids(v)) for k, v in ids.items()}


def _family_image_settings(family: str) -> dict[str, Any]:
    from jaxseg.models.family import get_family

    return get_family(family).image_processor


def _patch_and_merge(family: str, patch_size: int | None, merge_size: int | None):
    """(patch side, merge side) in pixels / patches: the family's processor's unless given
    (a vision tower configured with another `patch_size` / `spatial_merge_size`)."""
    settings = _family_image_settings(family)
    patch = int(patch_size or settings["patch_size"])
    merge = int(merge_size or 2)
    if patch < 1 or merge < 1:
        raise ValueError(f"patch_size {patch} / merge_size {merge}: both must be >= 1")
    return patch, merge


def _image_processor(
    min_pixels: int,
    max_pixels: int,
    family: str = "qwen2_5_vl",
    patch_size: int | None = None,
    merge_size: int | None = None,
):
    """The family's image processor (patch size, normalisation). Pixel bounds are given for
    patch 14 merged 2x2 (28 px merged tokens) and scaled to the merged-token side
    (`patch_size * merge_size`), so a frame gets the same number of visual tokens in every
    family and tower."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    settings = _family_image_settings(family)
    patch, merge = _patch_and_merge(family, patch_size, merge_size)
    return Qwen2VLImageProcessorPil(
        min_pixels=min_pixels * (merge * patch) ** 2 // 28**2,
        max_pixels=max_pixels * (merge * patch) ** 2 // 28**2,
        patch_size=patch,
        merge_size=merge,
        image_mean=settings["image_mean"],
        image_std=settings["image_std"],
    )


def video_processor_config(
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
    family: str = "qwen2_5_vl",
    patch_size: int | None = None,
    merge_size: int | None = None,
):
    """What the family's video processor reads (video_preprocessor_config.json)."""
    settings = _family_image_settings(family)
    patch, merge = _patch_and_merge(family, patch_size, merge_size)
    side2 = (merge * patch) ** 2
    min_pixels, max_pixels = min_pixels * side2 // 28**2, max_pixels * side2 // 28**2
    return {
        "video_processor_type": settings["video_processor_type"],
        "processor_class": settings["processor_class"],
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "patch_size": patch,
        "temporal_patch_size": 2,
        "merge_size": merge,
        "image_mean": settings["image_mean"],
        "image_std": settings["image_std"],
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
        "do_sample_frames": False,
    }


def has_video_backend() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def _processor_class(family: str):
    import transformers

    return getattr(transformers, _family_image_settings(family)["processor_class"])


def _image_only_class(family: str = "qwen2_5_vl"):
    from .hf_processing import _init_image_only

    base = _processor_class(family)

    class ImageOnlyProcessor(base):
        """The family's processor minus the video processor (which needs torchvision)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            _init_image_only(self, image_processor, tokenizer, chat_template)

    ImageOnlyProcessor.__name__ = f"ImageOnly{base.__name__}"
    return ImageOnlyProcessor


def build_processor(
    tokenizer,
    *,
    image_min_pixels: int = IMAGE_MIN_PIXELS,
    image_max_pixels: int = IMAGE_MAX_PIXELS,
    video_min_pixels: int = VIDEO_MIN_PIXELS,
    video_max_pixels: int = VIDEO_MAX_PIXELS,
    family: str = "qwen2_5_vl",
    patch_size: int | None = None,
    merge_size: int | None = None,
):
    """The `family`'s processor (Qwen2_5_VLProcessor / Qwen3VLProcessor) for `tokenizer`: full
    with torchvision, else image-only. `patch_size` / `merge_size`: the vision tower's
    (`vision_config.patch_size` / `spatial_merge_size`; default the family's released ones).
    Pixel bounds are for patch 14 merged 2x2 and scale with the merged-token side
    (`_image_processor`)."""
    patch = dict(patch_size=patch_size, merge_size=merge_size)
    image_processor = _image_processor(image_min_pixels, image_max_pixels, family, **patch)
    template = tokenizer.chat_template or QWEN2_5_VL_CHAT_TEMPLATE
    video_cfg = video_processor_config(video_min_pixels, video_max_pixels, family, **patch)
    if has_video_backend():  # pragma: no cover - torchvision is not installable here
        from transformers import AutoVideoProcessor

        video = AutoVideoProcessor.for_model(video_cfg["processor_class"])
        return _processor_class(family)(image_processor, tokenizer, video, chat_template=template)
    processor = _image_only_class(family)(image_processor, tokenizer, chat_template=template)
    processor._video_config = video_cfg
    processor._family = family
    return processor


def check_processor_matches(processor, config, where: str | Path = "processor") -> None:
    """A ValueError naming both when the processor's patch / merge size is not the model's
    (`config.vision.patch_size` / `spatial_merge_size`): the frames would be cut into patches
    the tower was not built for, or the prompt would hold the wrong number of placeholders."""
    improc = processor.image_processor
    pairs = (
        ("patch_size", "patch_size", improc.patch_size),
        ("merge_size", "spatial_merge_size", getattr(improc, "merge_size", 2)),
    )
    for ours, theirs, value in pairs:
        want = getattr(config.vision, theirs)
        if int(value) != int(want):
            raise ValueError(
                f"{where}: image processor {ours}={value} but the model's "
                f"vision_config.{theirs}={want}; build the processor for the model's tower "
                f"(jaxseg.data.tokenizer.build_processor(..., patch_size, merge_size))"
            )


def save_processor(processor, path: str | Path) -> Path:
    """Write the processor dir: tokenizer.json, tokenizer_config.json, chat_template.jinja,
    processor_config.json (transformers 5 nests the sub-processor configs in it), plus the
    per-part preprocessor_config.json / video_preprocessor_config.json older loaders read."""
    path = Path(path)
    processor.save_pretrained(path)
    processor.image_processor.save_pretrained(path)
    proc_cfg_path = path / "processor_config.json"
    proc_cfg: dict[str, Any] = json.loads(proc_cfg_path.read_text())
    video_cfg = getattr(processor, "_video_config", None)
    if video_cfg is not None:
        (path / "video_preprocessor_config.json").write_text(json.dumps(video_cfg, indent=2))
        proc_cfg["video_processor"] = video_cfg
    family = getattr(processor, "_family", "qwen2_5_vl")
    # what AutoProcessor should build
    proc_cfg["processor_class"] = _family_image_settings(family)["processor_class"]
    proc_cfg_path.write_text(json.dumps(proc_cfg, indent=2))
    # AutoProcessor(trust_remote_code=True) then loads it without torchvision
    from .hf_processing import add_remote_code

    add_remote_code(path)
    return path


def load_processor(path: str | Path):
    """Inverse of `save_processor` (AutoProcessor when torchvision is present)."""
    from transformers import AutoTokenizer

    path = Path(path)
    for name in ("tokenizer.json", "processor_config.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} does not exist: not a processor dir")
    if has_video_backend():  # pragma: no cover
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    proc_cfg = json.loads((path / "processor_config.json").read_text())
    from jaxseg.models.family import family_of_processor_class

    family = family_of_processor_class(proc_cfg.get("processor_class")).name
    image_cfg = proc_cfg.get("image_processor")
    if image_cfg is None:
        image_cfg = json.loads((path / "preprocessor_config.json").read_text())
    try:
        size = image_cfg["size"]
        patch, merge = _patch_and_merge(
            family, image_cfg.get("patch_size"), image_cfg.get("merge_size")
        )
        side2 = (merge * patch) ** 2  # saved bounds are in the tower's merged-token pixels
        image_processor = _image_processor(
            size["shortest_edge"] * 28**2 // side2,
            size["longest_edge"] * 28**2 // side2,
            family,
            patch_size=patch,
            merge_size=merge,
        )
    except KeyError as err:
        raise ValueError(f"{path}: image processor config lacks size.{err.args[0]}") from None
    processor = _image_only_class(family)(
        image_processor, tokenizer, chat_template=tokenizer.chat_template
    )
    processor._video_config = proc_cfg.get("video_processor")
    processor._family = family
    return processor


def iter_vocab(tokenizer) -> Iterator[str]:
    """Tokens in id order (for inspection)."""
    vocab = tokenizer.get_vocab()
    return iter(sorted(vocab, key=vocab.__getitem__))
