"""VideoSEG-O3 as released (arXiv 2606.06819): Qwen3-VL-4B-Instruct + `[SEG]` + SAM2-Hiera-L
prompt encoder and mask decoder, trained with the policy; SEG-aware calibration on; the
auxiliary BCE+Dice (0.2) on each turn's keyframe and the 5 sampled frames; R_m from the final
[SEG] decoded on the sampled frames; the released per-turn keyframe convention.

    jaxseg seg --config qwen3_vl_4b_o3_seg --workdir runs/o3_4b --seeds 0 \\
        --set model.init=/ckpt/Qwen3-VL-4B-Instruct-seg --set model.processor=... \\
        --set data.root=/data/revos --set segmenter.config.checkpoint=/ckpt/sam2_hiera_large.pt
    jaxseg plan --config qwen3_vl_4b_o3_seg --topology v5p-32
    (configs/qwen3_vl_2b_o3_seg.py: the same with Qwen3-VL-2B-Instruct)

`arg` knobs: size (4b|2b), remat (none|dots_saveable|full; default full), tensor, micro_batch.

Built on `qwen2_5_vl_3b_grpo:protocol=o3` (its GRPO hyperparameters are the released
Stage III's: G=4, 16 prompts, lr 3e-6, beta 0.04 k3, no clip, 512 tokens per turn, 1000 steps,
advantage eps 1e-4, temperature / top_p 0.9) with the model, protocol, segmenter and [SEG]
blocks replaced. What is not the released recipe:
- the cold start (`sft`): the released Stage II is a LoRA r128 / alpha 256 fine-tune (with
  full embed_tokens / lm_head) on ~6K VTS-CoT traces after a Stage I SFT on a large mix;
  `jaxseg seg`'s cold start is a full fine-tune on the protocol's oracle traces (no LoRA,
  no Stage I). Start from a Stage-II checkpoint (`model.init`) and set `sft.steps=0` to
  skip it.
- `model.init` must already hold `[SEG] <p> </p> <vp> </vp>` in its tokenizer (Qwen3-VL's
  151,936-row embedding has room past the tokenizer's ids; add the tokens to the
  tokenizer, no resize needed).
- SAM2 heads: VideoSEG-O3 loads the original `sam2_hiera_large.pt` (not 2.1); any SAM2(.1)
  Hiera-L checkpoint loads (`seg.decoder_checkpoint`, else `segmenter.config.checkpoint`).
"""

from ml_collections import ConfigDict

from jaxseg.config import load_config, parse_arg

# released Qwen3-VL-Instruct configs (configs/hf/), hidden size for the [SEG] projector
SIZES = {
    "4b": ("configs/hf/qwen3_vl_4b_instruct", 2560),
    "2b": ("configs/hf/qwen3_vl_2b_instruct", 2048),
}


def get_config(arg=None):
    a = parse_arg(arg, size="4b", remat="full", tensor=1, micro_batch=16)
    if a.size not in SIZES:
        raise ValueError(f"size={a.size!r}: choose one of {sorted(SIZES)}")
    hf, _ = SIZES[a.size]
    c = load_config(
        f"qwen2_5_vl_3b_grpo:protocol=o3,remat={a.remat},tensor={a.tensor},"
        f"micro_batch={a.micro_batch}"
    )
    name = f"Qwen3-VL-{a.size.upper()}-Instruct"
    c.model.family = "qwen3_vl"
    c.model.hf_config = hf  # architecture for the planner and the abstract build
    c.model.init = f"checkpoints/{name}"  # HF dir (with the [SEG] tokens)
    c.model.processor = f"checkpoints/{name}"

    # VideoSEG-O3 arXiv 2606.06819, training, RL inputs: 10 temporal frames <= 32*28^2 px
    # (158 px), 5 spatial <= 128*28^2 (317 px), the select keyframe <= 256*28^2 (448 px) in RL;
    # 5 frames per select, 3 turns
    c.protocol.config = ConfigDict(
        dict(
            answer="seg",
            temporal_frames=10,
            spatial_frames=5,  # the "sampled frames" of R_m and the auxiliary loss
            frame_size=158,
            spatial_size=317,
            keyframe_size=448,
            frames_per_round=5,
            max_turns=3,
            keyframes="released",  # turn 0: middle frame; then the select's keyframe
            seg_mask_reward="decoded",  # R_m: the final [SEG] decoded on the sampled frames
            shipped=True,  # the released R_p caps (+0.5; the `if` bug, VideoSEG-O3 arXiv 2606.06819 (rewards))
        )
    )
    # VideoSEG-O3 arXiv 2606.06819, evaluation: 20 temporal (158 px), 8 spatial (448 px), keyframe <= 512*28^2 (634 px)
    c.protocol.eval_config = ConfigDict(
        dict(temporal_frames=20, spatial_frames=8, spatial_size=448, keyframe_size=634)
    )

    # frozen SAM2-Hiera-L image encoder + memory behind the sidecar (features, propagation)
    c.segmenter.config = ConfigDict(
        dict(model="l", checkpoint="checkpoints/sam2_hiera_large.pt", device="cuda", bf16=True)
    )
    c.seg = ConfigDict()
    c.seg.decoder_preset = "hiera_large"
    c.seg.decoder_args = ConfigDict(dict(image_size=1024))
    c.seg.decoder_checkpoint = ""  # "" = segmenter.config.checkpoint's heads (strict load)
    c.seg.encoder = ConfigDict(c.segmenter.config.to_dict())  # features from the same SAM2
    c.seg.grid = 32  # calibration grid (VideoSEG-O3 arXiv 2606.06819, [SEG] decoding)
    c.seg.aux_weight = 0.2  # res_loss_ratio / lambda_seg (VideoSEG-O3 arXiv 2606.06819, training)
    c.seg.sampled_frames = (
        True  # aux + R_m on the 5 sampled frames (VideoSEG-O3 arXiv 2606.06819, training loss)
    )

    # `jaxseg seg` cold start (see the docstring): full fine-tune, Stage II's lr and epoch
    c.sft.mask_weight = 1.0  # BCE 2.0 + Dice 0.5 (Sa2VA / Stage I-II mask loss weights)
    c.eval.max_expressions = 1_000_000
    c.eval.chunk = 8
    return c
