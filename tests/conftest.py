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


import pytest  # noqa: E402

QUICK_DEMO = [  # the smallest demo run that still has every stage
    "sft.steps=2",
    "sft.num_examples=8",
    "grpo.steps=1",
    "grpo.prompts_per_step=2",
    "grpo.group_size=2",
    "grpo.max_new_tokens=24",
    "eval.max_expressions=4",
]


@pytest.fixture(scope="session")
def quick_demo_run(tmp_path_factory):
    """`jaxseg demo --quick` once per session: <root>/run (the run) and <root>/data. Shared
    by the experiment and notebook tests, which only read it."""
    from jaxseg import cli

    root = tmp_path_factory.mktemp("demo")
    args = ["demo", "--quick", "--workdir", str(root / "run"), "--no-progress"]
    for o in [f"data.root={root / 'data'}", *QUICK_DEMO]:
        args += ["--set", o]
    assert cli.main(args) == 0
    return root
