"""A Qwen2.5-VL processor that transformers' ``AutoProcessor`` builds without torchvision.

transformers 5 always loads a ``Qwen2_5_VLProcessor``'s video processor through
``AutoVideoProcessor``, and ``Qwen2VLVideoProcessor`` needs torchvision, which this project's
CPU install leaves out (PyPI's torchvision wheel is built against the CUDA torch and fails to
load its ops beside the CPU torch). So a processor folder written by ``save_pretrained`` does
not load with ``AutoProcessor`` here.

:func:`add_remote_code` makes one that does: it copies this file into the folder as
``processing_jaxseg.py`` and names its class in ``processor_config.json``'s ``auto_map``.
Then

    AutoProcessor.from_pretrained(folder, trust_remote_code=True)   # no torchvision needed

gives :class:`ImageOnlyQwen2_5_VLProcessor` (tokenizer + Qwen2-VL image processor; frames go
in as images), while ``processor_class`` stays ``Qwen2_5_VLProcessor``, so with torchvision
installed ``AutoProcessor.from_pretrained(folder)`` still builds transformers' own full
processor (transformers prefers its local class when trust_remote_code is not given).

This file is copied verbatim into checkpoints: it imports only the standard library and
transformers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from transformers import Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin

REMOTE_MODULE = "processing_jaxseg"
CLASS_NAME = "ImageOnlyQwen2_5_VLProcessor"


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2_5_VLProcessor minus the video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


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
    config["auto_map"] = {
        **config.get("auto_map", {}),
        "AutoProcessor": f"{REMOTE_MODULE}.{CLASS_NAME}",
    }
    config_path.write_text(json.dumps(config, indent=2))
    return target
