"""The parity oracle is sam2 1.1.0's torch PromptEncoder + MaskDecoder
(jaxseg/models/sam2/torch_reference.py); without torch + sam2 only the config tests run."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("sam2") is None:
    collect_ignore_glob = ["test_model.py", "test_weights.py"]
