"""Qwen2.5-VL-3B GRPO at pod scale (Veason-R1's RL setting, seeds_methods.md §3(c)): group 8,
16 prompts per step, 8 frames at 560x560 passed as images, up to 1024 new tokens, KL 5e-3
(so a frozen reference model is kept), bf16 compute over fp32 master weights, AdamW.

    jaxseg plan --config qwen2_5_vl_3b_grpo --topology v5p-32
    jaxseg plan --config qwen2_5_vl_3b_grpo:remat=full --topology 8xH100

remat defaults to "none" because that is what the model and trainer run today (eager
attention, no jax.checkpoint): on one v5p chip per sequence it does not fit, and the plan says
so. `remat=full` (per-block `nothing_saveable`) is the plan for once the trainer remats.

`arg` knobs (config.parse_arg): remat (none|block|full), group, prompts, frames, new_tokens,
micro_batch, tensor (size of the tensor axis; fsdp fills the rest of the slice),
sampler_weights (copy|train).
"""

from ml_collections import ConfigDict

from jaxseg.config import parse_arg


def get_config(arg: str | None = None) -> ConfigDict:
    a = parse_arg(
        arg,
        remat="none",
        group=8,
        prompts=16,
        frames=8,
        new_tokens=1024,
        micro_batch=16,
        tensor=1,
        sampler_weights="copy",
    )
    c = ConfigDict()
    c.model = ConfigDict(
        dict(
            hf_config="configs/hf/qwen2_5_vl_3b_instruct",
            dtype="bfloat16",  # computation
            param_dtype="float32",  # master weights (and optax moments)
        )
    )
    # data x fsdp x tensor inside a slice (ICI); across slices / GPU nodes (DCN) only data.
    c.mesh = ConfigDict(
        dict(
            axes=("data", "fsdp", "tensor"),
            ici=(1, -1, a.tensor),
            dcn=(1, 1, 1),
            granule="slice",
        )
    )
    # Empty: single process locally; launch/ sets JAX_* or JAXSEG_DISTRIBUTED_AUTO=1 per host.
    c.distributed = ConfigDict(dict(coordinator_address="", auto=False))
    c.rl = ConfigDict(
        dict(
            group_size=a.group,
            prompts_per_step=a.prompts,  # global, over all hosts
            max_new_tokens=a.new_tokens,
            kl_beta=5e-3,
            # 'copy': sample with a bf16 copy sharded over tensor only (refreshed each step);
            # 'train': with the FSDP training shards (all-gathered every generated token).
            sampler_weights=a.sampler_weights,
        )
    )
    c.data = ConfigDict(
        dict(
            num_frames=a.frames,
            frame_size=(560, 560),
            text_prompt_tokens=256,  # system prompt + frame timestamps + query
        )
    )
    c.train = ConfigDict(
        dict(
            micro_batch=a.micro_batch,  # global sequences per accumulation step
            remat=a.remat,
            learning_rate=1e-6,
            weight_decay=0.01,
        )
    )
    c.plan = ConfigDict(dict(mfu=0.4))
    return c
