"""RCoT-Seg's training structure on the synthetic benchmark: cold start, then
two GRPO runs -- AKS, then KTG -- whose prompts hold only the keyframe, the video description
and the query, with the paper's labels and data mixes (A:B 1:1, single:multi 3:1); the
evaluation runs the full VDG -> KFG -> AKS -> KTG pipeline (never a GT-chosen frame).

    jaxseg train --config rcot_stages --workdir runs/rcot_stages --stages data,sft,grpo,eval
    jaxseg train --config rcot_stages:quick ...        # a few steps of each (tests)

Each stage's reward curve is in its metrics.jsonl: grpo_aks/ (AKS, max 3) and grpo/ (KTG,
max 6). `--set grpo.stages=''` runs today's joint variant instead (one conversation, AKS
and KTG rewards in one trajectory).
"""

from ml_collections import ConfigDict

from jaxseg.config import load_config, parse_arg


def get_config(arg=None):
    a = parse_arg(arg, seed=0, quick=False)
    c = load_config(f"demo:protocol=rcot,seed={a.seed}" + (",quick" if a.quick else ""))
    c.data.root = "runs/data/synth_rcot"
    c.data.synth.videos = 8 if a.quick else 32
    c.data.synth.valid_videos = 2 if a.quick else 6
    c.model.size = "nano"
    # small images keep the tiny run in minutes: the paper's 448 px video / 840 px keyframe
    # are the 3B config's (qwen2_5_vl_3b_grpo:protocol=rcot)
    c.protocol.config = ConfigDict(dict(video_frames=8, video_size=56, keyframe_size=84))
    c.protocol.eval_config = ConfigDict(dict(max_reselect=2))

    c.sft.steps = 3 if a.quick else 120
    c.sft.num_examples = 16 if a.quick else 480
    c.sft.traces = "oracle"  # or a `jaxseg data cot` JSONL (teacher traces)
    # RCoT-Seg's SFT-28k holds the two stage tasks (8k AKS + 20k KTG); the tiny policy also
    # needs the pipeline (VDG, KFG), which the paper's pretrained base already does
    c.sft.tasks = "pipeline:1,aks:1,ktg:2"

    c.grpo.group_size = 4
    c.grpo.prompts_per_step = 2 if a.quick else 4
    c.grpo.max_new_tokens = 48 if a.quick else 96
    c.grpo.eval_every = 0
    c.grpo.stages = "aks,ktg"  # RCoT-Seg arXiv 2605.07334 (training): two task runs, AKS then KTG
    aks_steps, ktg_steps = (3, 3) if a.quick else (10, 20)  # the paper: 500 and 1000
    c.grpo.steps = aks_steps + ktg_steps
    c.grpo.stage = ConfigDict(
        dict(
            aks=ConfigDict(
                dict(steps=aks_steps, protocol=ConfigDict(dict(task="aks")), single_multi=(3, 1))
            ),
            ktg=ConfigDict(
                dict(steps=ktg_steps, protocol=ConfigDict(dict(task="ktg")), single_multi=(3, 1))
            ),
        )
    )
    c.eval.max_expressions = 4 if a.quick else 16
    return c
