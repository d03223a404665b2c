"""Qwen2.5-VL / Qwen3-VL processors that transformers' ``AutoProcessor`` builds without
torchvision.

transformers 5 always loads a ``Qwen2_5_VLProcessor``'s (``Qwen3VLProcessor``'s) video
processor through ``AutoVideoProcessor``, and the Qwen2-VL/Qwen3-VL video processors need
torchvision, which this project's
CPU install leaves out (PyPI's torchvision wheel is built against the CUDA torch and fails to
load its ops beside the CPU torch). So a processor folder written by ``save_pretrained`` does
not load with ``AutoProcessor`` here.

:func:`add_remote_code` makes one that does: it copies this file into the folder as
``processing_jaxseg.py`` and names the class for the folder's ``processor_class`` in
``processor_config.json``'s ``auto_map``.
Then

    AutoProcessor.from_pretrained(folder, trust_remote_code=True)   # no torchvision needed

gives :class:`ImageOnlyQwen2_5_VLProcessor` / :class:`ImageOnlyQwen3VLProcessor` (tokenizer +
image processor; frames go in as images), while ``processor_class`` stays transformers' name,
so with torchvision installed ``AutoProcessor.from_pretrained(folder)`` still builds
transformers' own full processor (transformers prefers its local class when trust_remote_code is not given).

This file is copied verbatim into checkpoints: it imports only the standard library and
transformers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from transformers import Qwen2_5_VLProcessor, Qwen3VLProcessor
from transformers.processing_utils import ProcessorMixin

REMOTE_MODULE = "processing_jaxseg"


def _init_image_only(self, image_processor, tokenizer, chat_template):
    self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
    self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
    self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
    self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
    self.vision_start_token = "<|vision_start|>"
    self.vision_end_token = "<|vision_end|>"
    self.vision_start_token_id = tokenizer.convert_tokens_to_ids(self.vision_start_token)
    self.vision_end_token_id = tokenizer.convert_tokens_to_ids(self.vision_end_token)
    ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2_5_VLProcessor minus the video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _init_image_only(self, image_processor, tokenizer, chat_template)


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3VLProcessor minus the video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _init_image_only(self, image_processor, tokenizer, chat_template)


CLASSES = {
    "Qwen2_5_VLProcessor": "ImageOnlyQwen2_5_VLProcessor",
    "Qwen3VLProcessor": "ImageOnlyQwen3VLProcessor",
}


def add_remote_code(folder: str | Path) -> Path:
    """Makes the processor in `folder` (tokenizer + processor_config.json) load with
    ``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` without torchvision.
    Returns the copied module's path."""
    folder = Path(folder)
    config_path = folder / "processor_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} does not exist: not a processor folder")
    target = folder / f"{REMOTE_MODULE}.py"
    shutil.copyfile(Path(__file__), target)
    config = json.loads(config_path.read_text())
    config.setdefault("processor_class", "Qwen2_5_VLProcessor")
    if config["processor_class"] not in CLASSES:
        raise ValueError(
            f"{config_path}: processor_class {config['processor_class']!r}; "
            f"an image-only class exists for {sorted(CLASSES)}"
        )
    config["auto_map"] = {
        **config.get("auto_map", {}),
        "AutoProcessor": f"{REMOTE_MODULE}.{CLASSES[config['processor_class']]}",
    }
    config_path.write_text(json.dumps(config, indent=2))
    return target
