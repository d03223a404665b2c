"""Qwen2.5-VL-3B real runs, one per seed protocol, with that seed's hyperparameters (each
value's comment names where in the seed's paper or released code it is stated: its training
recipe, inference loop or evaluation): cold-start SFT (LoRA, as
the seeds do) -> GRPO -> evaluation with `jaxseg train`, and the pod-scale memory / time plan
of the GRPO stage with `jaxseg plan`.

    jaxseg train --config qwen2_5_vl_3b_grpo:protocol=rcot --workdir runs/rcot3b \\
        --stages sft,grpo,eval --set model.init=/ckpt/Qwen2.5-VL-3B-Instruct \\
        --set model.processor=/ckpt/Qwen2.5-VL-3B-Instruct --set data.root=/data/revos \\
        --set segmenter.config.checkpoint=/ckpt/sam2.1_hiera_large.pt
    jaxseg plan --config qwen2_5_vl_3b_grpo --topology v5p-32
    jaxseg plan --config qwen2_5_vl_3b_grpo:protocol=o3,remat=full --topology 8xH100

Leave out the `data` stage on real data (it writes the synthetic benchmark). Values a seed
does not publish are marked "not stated" and take the named stand-in.

remat: the model rematerialises per block (`model.remat`: the one field the trainer runs
with and `jaxseg plan` reads). It defaults to "none" so the plan shows
what no remat costs (it does not fit a v5p-32); `remat=full` is the setting to train with.

`arg` knobs (config.parse_arg): protocol (veason|rcot|o3|revseg), remat (none|dots_saveable|full),
group, prompts, frames, new_tokens (default: the protocol's), micro_batch, tensor (size of the
tensor axis; fsdp fills the rest of the slice), sampler_weights (copy|train).

`jaxseg plan` (jaxseg.parallel.planner) reads the fields the trainer runs with (`model`, `mesh`,
`grpo`) plus its own assumptions in the `plan` block (prompt size, turns, sampler weights, MFU).
"""

import math

from ml_collections import ConfigDict

from jaxseg.config import parse_arg

TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Per seed: cold-start SFT, GRPO, the protocol's own config (jaxseg.protocols.*Config) and the
# planner's image budget (frames x frame_size: the largest prompt the GRPO stage builds).
PROTOCOLS = {
    # Veason-R1 (arXiv 2508.11538; code SitongGong/Veason-R1).
    "veason": dict(
        sft=dict(
            lora_rank=8,  # training: LLaMA-Factory LoRA rank 8
            lora_alpha=None,  # not stated: LLaMA-Factory's default 2 x rank
            learning_rate=1e-4,  # training, cosine, 1 epoch
            warmup_ratio=0.0,  # not stated (LLaMA-Factory default 0)
            weight_decay=0.0,  # not stated
            batch_size=64,  # not stated: RCoT-Seg's 8 x grad-accum 8 (training)
            num_examples=6000,  # training: ~6K CoT traces kept of ~10K instances
        ),
        grpo=dict(
            group_size=8,  # training n=8
            prompts_per_step=16,  # training rollout batch 16
            learning_rate=1e-6,  # training
            weight_decay=0.01,  # training
            kl_coef=5e-3,  # training low_var_kl
            kl_estimator="low_var_kl",
            policy_loss="ppo_clip",  # training clip ratio 0.2, 1 PPO epoch
            eps_low=0.2,
            eps_high=0.2,
            temperature=1.0,  # training temperature / top_p 1.0 / 1.0
            top_p=1.0,
            max_new_tokens=1024,  # training max response 1024 (single turn)
            steps=625,  # training one episode over ~10K prompts (eval loads global_step_625)
        ),
        # data: training frames are 6, around a random top-5-area keyframe, at 560 px;
        # evaluation (inference) shows 8 uniform frames at 560 px (protocol.eval_config; the
        # evaluation never uses the GT-centred training sampler, registry.make_eval_protocol)
        protocol=dict(num_frames=6, image_size=560, sampling="keyframe", top_k=5),
        eval=dict(num_frames=8, image_size=560, sampling="uniform"),
        plan=dict(frames=8, frame_size=(560, 560), turns=1),  # the 8-frame eval prompt
    ),
    # RCoT-Seg (arXiv 2605.07334; the code is not released).
    "rcot": dict(
        sft=dict(
            lora_rank=8,  # training: LLaMA-Factory LoRA r=8
            lora_alpha=None,  # not stated: LLaMA-Factory's default 2 x rank
            learning_rate=1e-4,  # training, cosine
            warmup_ratio=0.1,  # training
            weight_decay=0.0,  # not stated
            batch_size=64,  # training: batch 8 x grad-accum 8
            num_examples=28000,  # training: RCoT-Seg-SFT-28k (20k KTG + 8k AKS), 1 epoch
            tasks="aks:2,ktg:5",  # training: the SFT data are the two stage tasks, 8k : 20k
        ),
        grpo=dict(
            group_size=8,  # training rollout n=8
            prompts_per_step=16,  # training batch 16
            learning_rate=1e-6,  # training constant
            weight_decay=0.01,  # training
            kl_coef=0.01,  # training low-var-kl
            kl_estimator="low_var_kl",
            policy_loss="ppo_clip",  # not stated: verl's default clip 0.2
            eps_low=0.2,
            eps_high=0.2,
            temperature=1.0,  # training
            top_p=1.0,
            max_new_tokens=2000,  # training max response 2000
            steps=1500,  # training: AKS 500 + KTG 1000, two runs (stages below)
        ),
        # training: two GRPO runs, AKS then KTG, prompts = keyframe + description + query (max
        # prompt 3000 tokens), the paper's labels (A = max-area frame, B = zero-area frame,
        # A:B 1:1) and single:multi-target 3:1 (jaxseg.train.stages, jaxseg.train.mix).
        # --set grpo.stages='' trains the joint variant (one conversation, summed rewards).
        stages=dict(
            aks=dict(steps=500, protocol=dict(task="aks"), single_multi=(3, 1)),
            ktg=dict(steps=1000, protocol=dict(task="ktg"), single_multi=(3, 1)),
        ),
        # inference: VDG/KFG see every frame at 448 px (video_frames None), AKS/KTG the keyframe
        # at 840 px, lambda = 5 AKS checks; eval always runs the whole pipeline.
        protocol=dict(video_frames=None, video_size=448, keyframe_size=840, max_reselect=5),
        eval=dict(task="pipeline"),
        # the GRPO prompt of both stages: one 840 px keyframe (+ ~200 text tokens)
        plan=dict(frames=1, frame_size=(840, 840), turns=1),
    ),
    # VideoSEG-O3 (arXiv 2606.06819; code Dmmm1997/VideoSEG-O3). The seed's LLM is Qwen3-VL;
    # here Qwen2.5-VL-3B.
    "o3": dict(
        sft=dict(
            lora_rank=128,  # training Stage II (as Stage I): LoRA r=128, alpha=256
            lora_alpha=256.0,  # (dropout 0.05 and full embed/lm_head training: not supported)
            learning_rate=4e-5,  # training AdamW, cosine, 1 epoch
            warmup_ratio=0.05,  # training warmup 5%
            weight_decay=0.05,  # training
            batch_size=32,  # training cold start: 1 per GPU x grad-accum 4 x 8 GPUs
            num_examples=6000,  # training VTS-CoT ~6K samples
        ),
        grpo=dict(
            group_size=4,  # training Stage III num_generations=4
            prompts_per_step=16,  # training: 64 completions per optimiser step / 4
            learning_rate=3e-6,  # training
            weight_decay=0.0,  # not stated (TRL's default 0)
            kl_coef=0.04,  # training beta=0.04, k3
            kl_estimator="k3",
            policy_loss="on_policy",  # training: no PPO clipping, one on-policy update
            eps_low=0.2,
            eps_high=0.2,
            temperature=0.9,  # training TRL-0.17 default 0.9, top_p 0.9
            top_p=0.9,
            max_new_tokens=512,  # training max_completion_length 512 per turn
            steps=1000,  # training max_steps
            advantage_eps=1e-4,  # training: A = (r - mean) / (std + 1e-4)
        ),
        # training RL inputs: 10 temporal frames <= 32*28^2 px (140 px), 5 spatial <= 128*28^2
        # (308 px), keyframe <= 256*28^2 (448 px), 5 frames per select, max_turn 3.
        protocol=dict(
            temporal_frames=10,
            spatial_frames=5,
            frame_size=140,
            spatial_size=308,
            keyframe_size=448,
            frames_per_round=5,
            max_turns=3,
        ),
        # evaluation evaluation: 20 temporal frames <= 32*28^2 (158 px), 8 spatial <= 256*28^2
        # (448 px), the select keyframe <= 512*28^2 (634 px); greedy, max_turns 3
        eval=dict(
            temporal_frames=20,
            spatial_frames=8,
            frame_size=158,
            spatial_size=448,
            keyframe_size=634,
        ),
        # the 3-turn prompt in 448 px frames of equal token count: turn 0 10x25 + 5x121,
        # each select 5x25 + 256 -> 1617 tokens ~ 6 x 256
        plan=dict(frames=6, frame_size=(448, 448), turns=3),
    ),
    # ReVSeg (arXiv 2512.02835): code unreleased; most values are not stated.
    "revseg": dict(
        sft=None,  # training: no CoT cold start mentioned; GRPO starts from the base model
        grpo=dict(
            group_size=8,  # not stated: Veason-R1's values (training) stand in
            prompts_per_step=16,
            learning_rate=1e-6,
            weight_decay=0.01,
            kl_coef=5e-3,
            kl_estimator="low_var_kl",
            policy_loss="ppo_clip",
            eps_low=0.2,
            eps_high=0.2,
            temperature=1.0,
            top_p=1.0,
            max_new_tokens=1024,
            steps=520,  # training: ~520 logged RL steps
        ),
        # frame count / sizes not stated: Veason's 8 frames at 560 px, RCoT's 840 px keyframe;
        # data: the total reward looks multiplicative
        protocol=dict(num_frames=8, image_size=560, keyframe_size=840, combine="product"),
        eval=dict(),  # not stated: as in training
        # 8 x 560 px frames + the 840 px keyframe (~2.25 frames of 560 px)
        plan=dict(frames=10, frame_size=(560, 560), turns=2),
    ),
}


def get_config(arg: str | None = None) -> ConfigDict:
    a = parse_arg(
        arg,
        protocol="veason",
        remat="none",
        group=None,
        prompts=None,
        frames=None,
        new_tokens=None,
        micro_batch=16,
        tensor=1,
        sampler_weights="copy",
    )
    if a.protocol not in PROTOCOLS:
        raise ValueError(f"protocol={a.protocol!r}: choose one of {sorted(PROTOCOLS)}")
    p = PROTOCOLS[a.protocol]
    g = dict(p["grpo"])
    g["group_size"] = g["group_size"] if a.group is None else int(a.group)
    g["prompts_per_step"] = g["prompts_per_step"] if a.prompts is None else int(a.prompts)
    g["max_new_tokens"] = g["max_new_tokens"] if a.new_tokens is None else int(a.new_tokens)
    frames = p["plan"]["frames"] if a.frames is None else int(a.frames)

    c = ConfigDict()
    c.seed = 0
    c.model = ConfigDict(
        dict(
            hf_config="configs/hf/qwen2_5_vl_3b_instruct",  # architecture for the planner
            init="checkpoints/Qwen2.5-VL-3B-Instruct",  # HF directory with the weights
            processor="checkpoints/Qwen2.5-VL-3B-Instruct",
            dtype="bfloat16",  # computation
            param_dtype="float32",  # master weights (and optax moments)
            remat=a.remat,  # per transformer block, training passes only
        )
    )
    c.data = ConfigDict(
        dict(
            root="data/revos",  # training: Veason trains on ReVOS only
            format="revos",
            train_split="train",
            eval_split="valid",
        )
    )
    c.protocol = ConfigDict(
        dict(
            name=a.protocol,
            config=ConfigDict(p["protocol"]),
            eval_config=ConfigDict(p["eval"]),  # what evaluation changes (make_eval_protocol)
        )
    )
    # frozen SAM2 (every seed; inference: SAM2.1-Hiera-L at eval) behind the sidecar
    c.segmenter = ConfigDict(
        dict(
            backend="sam2",
            config=ConfigDict(
                dict(model="l", checkpoint="checkpoints/sam2.1_hiera_large.pt", device="cuda")
            ),
        )
    )

    s = p["sft"]
    c.sft = ConfigDict()
    if s is None:
        c.sft.num_examples = 0
        c.sft.steps = 0
        c.sft.batch_size = 1
        c.sft.learning_rate = 0.0
        c.sft.warmup_steps = 0
        c.sft.weight_decay = 0.0
        c.sft.lora_rank = 0
        c.sft.lora_alpha = None
    else:
        c.sft.num_examples = s["num_examples"]
        c.sft.batch_size = s["batch_size"]
        c.sft.steps = math.ceil(s["num_examples"] / s["batch_size"])  # one epoch
        c.sft.learning_rate = s["learning_rate"]
        c.sft.warmup_steps = round(s["warmup_ratio"] * c.sft.steps)
        c.sft.weight_decay = s["weight_decay"]
        c.sft.lora_rank = s["lora_rank"]
        c.sft.lora_alpha = s["lora_alpha"]
    c.sft.micro_batch = 8
    c.sft.traces = "oracle"  # or a `jaxseg data cot --teacher` JSONL (the seeds' teacher CoT)
    c.sft.tasks = (s or {}).get("tasks", "")  # "" = the protocol's own episodes
    c.sft.lora_targets = TEXT_TARGETS
    # the vision tower is not trained in any seed's SFT (VideoSEG-O3: "LLM and vision encoder
    # frozen"; the LoRA cold starts adapt the language model only)
    c.sft.freeze_vision = True
    c.sft.checkpoint_every = 50
    c.sft.keep = 3
    c.sft.eval_every = 0  # held-out evaluation during the stage (0 = off)
    # non-finite loss/grad steps are skipped; more than this many in a row abort (train.faults)
    c.sft.max_nonfinite = 3
    # copy supervision on the trace's restated query (jaxseg.train.objectness's L_copy): none
    # of the seeds has it; a from-scratch tiny policy needed it to copy (README)
    c.sft.copy = 0.0

    # GRPO: full fine-tuning in every seed (LoRA only in their cold starts)
    c.grpo = ConfigDict(g)
    c.grpo.advantage_eps = g.get("advantage_eps", 1e-6)
    stages = p.get("stages")
    c.grpo.stages = ",".join(stages) if stages else ""
    c.grpo.stage = ConfigDict(
        {k: ConfigDict({**v, "protocol": ConfigDict(v["protocol"])}) for k, v in stages.items()}
        if stages
        else {}
    )
    c.grpo.require_sft = s is not None
    c.grpo.micro_batch = a.micro_batch
    c.grpo.top_k = 0
    c.grpo.advantage = "grpo"  # (r - mean) / std over the group (training, training)
    c.grpo.aggregation = "seq-mean-token-mean"  # training; not stated for Veason / RCoT
    c.grpo.warmup_steps = 0
    c.grpo.lora_rank = 0
    c.grpo.lora_alpha = None
    c.grpo.lora_targets = TEXT_TARGETS
    c.grpo.freeze_vision = False  # VideoSEG-O3's RL trains the whole Qwen3-VL, tower included
    c.grpo.checkpoint_every = 25
    c.grpo.keep = 3
    c.grpo.max_nonfinite = 3
    c.grpo.eval_every = 50

    # final evaluation on the whole split; eval_every ones on periodic_expressions of it
    c.eval = ConfigDict(dict(max_expressions=1_000_000, chunk=8, periodic_expressions=64))

    # ---- pod scale: data x fsdp x tensor inside a slice (ICI); across slices or GPU nodes
    # (DCN) only data.
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
    # What the planner assumes beyond the fields above (it reads model, mesh and grpo as the
    # trainer does): the largest prompt of a GRPO sequence, turns per episode (each with
    # grpo.max_new_tokens), how the sampler holds its weights, and the MFU.
    c.plan = ConfigDict(
        dict(
            frames=frames,
            frame_size=p["plan"]["frame_size"],
            text_prompt_tokens=256,  # system prompt + frame indices + query
            turns=p["plan"]["turns"],
            # 'copy': sample with a bf16 copy sharded over tensor only (refreshed each step);
            # 'train': with the FSDP training shards (all-gathered every generated token).
            sampler_weights=a.sampler_weights,
            mfu=0.4,
        )
    )
    return c
