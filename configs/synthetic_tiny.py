"""The embedded default (`demo`): synthetic benchmark -> tiny Qwen3-VL -> SFT -> GRPO -> eval.

    jaxseg demo                                   # this config
    jaxseg train --config demo:protocol=o3 --workdir runs/o3 --set grpo.steps=40
    jaxseg train --config demo:quick ...          # a few steps of each stage (CI)

`:arg` knobs (change several fields at once): protocol, size, family (qwen2_5_vl | qwen3_vl),
base (shipped: start from jaxseg/assets/qwen3_vl_tiny, built by `make base`; random),
quick, seed, lora (adapter rank for both stages; 0 = full fine-tuning), mesh (e.g. 2x2x2: data
x fsdp x tensor).
"""

from ml_collections import ConfigDict

from jaxseg.config import parse_arg


def get_config(arg=None):
    a = parse_arg(
        arg,
        protocol="veason",
        size="tiny",
        family="qwen3_vl",
        base="shipped",
        quick=False,
        seed=0,
        lora=0,
        mesh="",
    )
    c = ConfigDict()
    c.seed = a.seed
    if a.mesh:  # e.g. mesh=2x2x2: data x fsdp x tensor over the local devices (jaxseg.parallel)
        c.mesh = ConfigDict(dict(ici=tuple(int(n) for n in str(a.mesh).split("x"))))

    # Data: the synthetic reasoning-VOS benchmark in the ReVOS layout (any reader format works)
    c.data = ConfigDict()
    c.data.root = "{workdir}/data/synth"  # with the run (a bucket too); any path works
    c.data.format = "revos"
    c.data.train_split = "train"
    c.data.eval_split = "valid"
    c.data.synth = ConfigDict(
        dict(
            videos=8 if a.quick else 160,
            valid_videos=2 if a.quick else 24,
            seed=1000,
            difficulty="medium",
            position_ramp=0.0,
        )
    )

    # Policy: `family` (jaxseg.models.family) and `init` = "random" (preset size) or an HF
    # checkpoint dir (its config.json's model_type then decides the family)
    c.model = ConfigDict()
    c.model.family = a.family
    c.model.size = "nano" if a.quick else a.size
    # the grounded base shipped in the package (make base) for the full demo; quick runs and
    # `base=random` (or another family) start from random weights
    shipped = a.base == "shipped" and a.family == "qwen3_vl" and not a.quick
    c.model.init = "shipped:qwen3_vl_tiny" if shipped else "random"
    # who draws random weights: "jaxseg" (our initialiser) or "transformers" (the HF class's
    # own `_init_weights` under torch.manual_seed(seed); needs torch)
    c.model.initializer = "jaxseg"
    # the starting values of a learned vision position table (Qwen3-VL): "normal" (as the
    # released init: std 0.02) or "sincos2d" (a 2-D sine-cosine code as large as the patch
    # embedding, so position is in every visual token's value from the first step)
    c.model.position_init = "normal"
    c.model.dtype = "float32"
    c.model.remat = "none"  # none | dots_saveable | full (per block, training only)
    # "synthetic" (built), a processor dir (tokenizer.json + processor_config.json), or the
    # shipped base's own processor
    c.model.processor = "shipped:qwen3_vl_tiny" if shipped else "synthetic"

    c.protocol = ConfigDict()
    c.protocol.name = a.protocol
    c.protocol.config = ConfigDict()

    # Mask backend for rewards and eval: "classical" (no weights), "sam2" (sidecar), "oracle"
    c.segmenter = ConfigDict()
    c.segmenter.backend = "classical"
    c.segmenter.config = ConfigDict()

    # Stage 0: single-frame referring grounding (jaxseg.train.grounding), the base skill a
    # from-scratch policy lacks and a real Qwen2.5-VL brings; steps=0 skips it. Off in the
    # demo: measured, the tiny policy did not learn it in the budget (held-out box IoU 0.02 after
    # 600 steps x 64 frames, vs 0.006 for always answering the mean box); quick runs exercise it.
    c.pretrain = ConfigDict()
    c.pretrain.steps = 3 if a.quick else 0
    c.pretrain.num_examples = 32 if a.quick else 3000
    c.pretrain.batch_size = 4 if a.quick else 64
    c.pretrain.micro_batch = 4 if a.quick else 64
    c.pretrain.learning_rate = 3e-3
    c.pretrain.warmup_steps = 0 if a.quick else 30
    c.pretrain.weight_decay = 0.0
    c.pretrain.image_size = 112
    c.pretrain.eval_items = 8 if a.quick else 96
    c.pretrain.checkpoint_every = 100
    c.pretrain.eval_every = 0
    c.pretrain.keep = 2
    # a step with a non-finite loss or grad norm is skipped (no update, counted as
    # nonfinite_skipped); more than max_nonfinite of them in a row abort the run
    # (exit != 0; 0 = abort at the first). jaxseg.train.faults
    c.pretrain.max_nonfinite = 3

    # Stage 1: cold-start SFT on the protocol's oracle traces
    c.sft = ConfigDict()
    c.sft.num_examples = 32 if a.quick else 1600
    c.sft.steps = 3 if a.quick else 600
    c.sft.batch_size = 4 if a.quick else 8
    c.sft.micro_batch = 4 if a.quick else 8
    c.sft.learning_rate = 1e-3
    c.sft.warmup_steps = 0 if a.quick else 20
    c.sft.weight_decay = 0.0
    c.sft.checkpoint_every = 50
    c.sft.eval_every = 0
    c.sft.keep = 2
    c.sft.max_nonfinite = 3
    # weight of copy supervision on the trace's restated query (jaxseg.train.objectness's
    # L_copy, Experiment.sft): attention head 0 of the last layer, from each position writing
    # the quoted query, is fitted to the prompt token it repeats; 0 turns it off
    c.sft.copy = 0.0
    # LoRA (jaxseg.train.lora): rank 0 = full fine-tuning; alpha None = 2 x rank
    c.sft.lora_rank = a.lora
    c.sft.lora_alpha = None
    c.sft.lora_targets = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    # the vision tower (and its mergers) left as the base has it: no backward pass through
    # it (jaxseg.train.learner.trainable); VideoSEG-O3's SFT stages freeze the vision encoder.
    # On from the shipped base (its tower is trained; a random one is not): its 8 px patches
    # make the tower most of an SFT step (1.35 vs 2.2 s/step on 2 cores; README)
    c.sft.freeze_vision = shipped

    # Stage 2: GRPO (Veason-R1 defaults: PPO clip 0.2, k3 KL; VideoSEG-O3: policy_loss=on_policy)
    c.grpo = ConfigDict()
    c.grpo.require_sft = True
    c.grpo.steps = 2 if a.quick else 30
    c.grpo.prompts_per_step = 2 if a.quick else 4
    c.grpo.group_size = 2 if a.quick else 8
    c.grpo.micro_batch = 4 if a.quick else 16
    c.grpo.max_new_tokens = 48 if a.quick else 160
    c.grpo.temperature = 1.0 if a.quick else 0.8
    c.grpo.top_k = 0
    c.grpo.top_p = 1.0
    c.grpo.advantage = "grpo"
    c.grpo.policy_loss = "ppo_clip"
    c.grpo.eps_low = 0.2
    c.grpo.eps_high = 0.28
    c.grpo.kl_estimator = "k3"
    c.grpo.kl_coef = 0.01
    c.grpo.aggregation = "seq-mean-token-mean"
    c.grpo.learning_rate = 1e-5
    c.grpo.warmup_steps = 0
    c.grpo.weight_decay = 0.0
    c.grpo.checkpoint_every = 10
    c.grpo.eval_every = 2 if a.quick else 10  # held-out J&F during training (0 = off)
    c.grpo.keep = 2
    c.grpo.max_nonfinite = 3
    c.grpo.lora_rank = a.lora
    c.grpo.lora_alpha = None
    c.grpo.lora_targets = c.sft.lora_targets
    c.grpo.freeze_vision = False  # as sft.freeze_vision (VideoSEG-O3's RL trains the tower)

    if a.protocol == "revseg":  # ReVSeg trains RL from the base, no cold start (arXiv
        # 2512.02835): its ladder is base vs base+GRPO
        c.sft.steps = 0
        c.grpo.require_sft = False

    c.eval = ConfigDict()
    c.eval.max_expressions = 8 if a.quick else 48
    c.eval.chunk = 8
    c.eval.periodic_expressions = 4 if a.quick else 16  # per eval_every evaluation

    # Metrics (jaxseg.train.metrics): JSONL always; "tensorboard"; "wandb" (offline unless
    # mode="online"; `wandb sync <stage>/wandb/offline-run-*` uploads later). Without a TTY (or
    # with --no-progress) progress is logged every log_every steps instead of tqdm bars.
    c.metrics = ConfigDict()
    c.metrics.writers = ("jsonl", "tensorboard")
    c.metrics.log_every = 1 if a.quick else 10
    c.metrics.wandb = ConfigDict(dict(project="jaxseg", entity="", mode="offline"))
    return c


def get_sweep(hyper):
    """The ladder: two training seeds x the four protocols (ReVSeg's RL starts from the base,
    without SFT, as the `protocol=revseg` knob sets)."""
    cold_start = hyper.sweep("protocol.name", ["veason", "rcot", "o3"])
    from_base = [{"protocol.name": "revseg", "sft.steps": 0, "grpo.require_sft": False}]
    return hyper.product([hyper.sweep("seed", [0, 1]), hyper.chain([cold_start, from_base])])
