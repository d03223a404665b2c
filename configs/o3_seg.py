"""VideoSEG-O3's [SEG] route on the synthetic benchmark.

    jaxseg seg --config o3_seg --workdir runs/o3_seg --seeds 0,1
    jaxseg seg --config o3_seg:quick --workdir runs/o3_seg_quick --seeds 0     # smoke

Tiny Qwen policy; SAM2 image features from the sidecar's randomly initialised tiny SAM2
(frozen); SAM2's prompt encoder + mask decoder (hiera_tiny heads at 256 px) trained with the
policy: from `seg.decoder_checkpoint` (a SAM2 .pt) when set, else from scratch (no SAM2
weights can be downloaded here). The released recipe otherwise: every turn's [SEG] decoded on
its keyframe under the released per-turn keyframe convention (`protocol.config.keyframes`),
the final [SEG] decoded on the 5 sampled frames for R_m and, with the keyframes, for the
auxiliary BCE+Dice (weight 0.2). The final keyframe mask is propagated by the classical
tracker (a random-weight SAM2 cannot track). One cold start, then GRPO with calibration on
and off from the same weights, each scored on the held-out split. `:quick` is a smoke test.
"""

from ml_collections import ConfigDict

from jaxseg.config import load_config, parse_arg


def get_config(arg=None):
    a = parse_arg(arg, seed=0, quick=False)
    c = load_config(f"demo:protocol=o3,seed={a.seed}" + (",quick" if a.quick else ""))
    c.data.root = "runs/data/synth_seg"
    c.data.synth.videos = 8 if a.quick else 48
    c.data.synth.valid_videos = 2 if a.quick else 8
    c.model.size = "nano"
    c.protocol.config = ConfigDict(
        dict(
            answer="seg",
            max_turns=2,
            temporal_frames=6,
            spatial_frames=5,  # the RL "sampled frames" (VideoSEG-O3 arXiv 2606.06819, training: 5 spatial + 5 SAM frames)
            keyframes="released",  # VideoSEG-O3 arXiv 2606.06819, rewards: turn 0 middle frame, then the select's keyframe
            seg_mask_reward="decoded",  # R_m from the final [SEG] on the sampled frames
        )
    )

    c.seg = ConfigDict()
    c.seg.decoder_preset = "hiera_tiny"
    c.seg.decoder_args = ConfigDict(dict(image_size=256))
    c.seg.encoder = ConfigDict(dict(model="tiny", embed_cache_frames=512))
    c.seg.grid = 32  # calibration grid (released code)
    c.seg.aux_weight = 0.2  # lambda_seg (res_loss_ratio)
    c.seg.sampled_frames = True  # aux loss + R_m on the sampled frames, not only keyframes
    c.seg.decoder_checkpoint = ""  # SAM2 .pt for the heads ("" = segmenter's, else random)

    c.sft.num_examples = 16 if a.quick else 400
    c.sft.steps = 2 if a.quick else 180
    c.sft.batch_size = 4 if a.quick else 8
    c.sft.micro_batch = 4 if a.quick else 8
    c.sft.learning_rate = 1e-3
    c.sft.warmup_steps = 0 if a.quick else 10
    c.sft.mask_weight = 1.0  # Sa2VA Stage I: BCE 2.0 + Dice 0.5, unscaled

    # VideoSEG-O3 GRPO: on-policy surrogate, k3 KL; lr raised for the tiny budget
    c.grpo.steps = 2 if a.quick else 8
    c.grpo.prompts_per_step = 2 if a.quick else 4
    c.grpo.group_size = 2 if a.quick else 4
    c.grpo.micro_batch = 4 if a.quick else 8
    c.grpo.max_new_tokens = 48 if a.quick else 112
    c.grpo.policy_loss = "on_policy"
    c.grpo.kl_coef = 0.04
    c.grpo.advantage_eps = 1e-4  # A = (r - mean) / (std + 1e-4), the released TRL trainer
    c.grpo.learning_rate = 5e-5
    c.grpo.temperature = 1.0

    c.eval.max_expressions = 4 if a.quick else 24
    c.eval.chunk = 8
    return c
