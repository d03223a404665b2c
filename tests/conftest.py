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


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Drop JAX's compiled executables after each test module. One pytest process compiles
    thousands of them and XLA:CPU keeps each one's code mapped: the full default tier crashed
    inside XLA's compiler (a segmentation fault at ~98%, in whichever test compiled next)
    while every module passes on its own, which is what running out of memory mappings
    (vm.max_map_count, 65530 here) looks like."""
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
