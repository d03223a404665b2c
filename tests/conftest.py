"""Session-wide test settings.

Set before JAX is imported anywhere: 8 simulated CPU devices so mesh tests ((8,1,1),
(1,2,4), (2,2,2)) run in the default tier; unsharded code still runs on device 0. No test
may reach a model hub.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
