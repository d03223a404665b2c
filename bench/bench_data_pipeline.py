"""Data pipeline throughput (clips/s) of the grain pipeline vs a plain Python loader, same run.

A clip is one (video, expression) sample: N sampled frames decoded and resized, the target
masks of those frames, and the encoded prompt. Both loaders read the same synthetic split
(`jaxseg.data.synth`, ReVOS layout) and do the same work:
  reference: a Veason-R1-style loop (decode every frame's RLE to find the top-5-area
             pseudo-keyframe, PIL-open the sampled frames, resize, encode), one process;
  jaxseg:    `build_dataset` (areas from RLE without decoding where possible, lazy masks),
             with 0 and with --workers worker processes.

    python bench/bench_data_pipeline.py                       # 48 videos, 128 px, byte encode
    python bench/bench_data_pipeline.py --encode qwen --workers 2
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image


def reference_clips(index, num_frames, size, encode, seed):
    """Veason-R1's training loader, transcribed: all masks decoded per clip."""
    rng = np.random.default_rng(seed)
    from jaxseg.data.encode import Clip

    for rec in index:
        union = np.zeros((rec.num_frames, rec.height, rec.width), np.uint8)
        for rles in rec.masks.rles:
            for t, rle in enumerate(rles):
                if rle is not None:
                    union[t] |= mask_utils.decode(rle)
        areas = union.sum(axis=(1, 2))
        k = int(rng.choice(areas.argsort()[-5:][::-1]))
        stride = math.ceil(rec.num_frames / (num_frames - 1))
        pos = list(range(k % stride, rec.num_frames, stride))
        frames = np.stack(
            [
                np.asarray(Image.open(rec.frame_paths[p]).convert("RGB").resize(size[::-1]))
                for p in pos
            ]
        )
        masks = np.stack(
            [np.asarray(Image.fromarray(union[p]).resize(size[::-1], Image.NEAREST)) for p in pos]
        )
        clip = Clip(
            rec.video_id,
            rec.exp_id,
            rec.expression,
            rec.type_id,
            frames,
            masks > 0,
            np.asarray([rec.frame_ids[p] for p in pos]),
            np.asarray(pos),
            k,
            (rec.height, rec.width),
        )
        yield encode(clip)


def qwen_encode():
    from transformers import Qwen2_5_VLConfig as HFConfig

    from jaxseg.data.encode import Qwen25VLEncode
    from jaxseg.data.tokenizer import build_processor, build_tokenizer, special_token_ids
    from jaxseg.models.qwen2_5_vl.config import Qwen2_5_VLConfig

    tok = build_tokenizer()
    ids = special_token_ids(tok)
    hf = HFConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4},
            num_attention_heads=2,
            num_key_value_heads=1,
        ),
        vision_config=dict(
            depth=1,
            hidden_size=16,
            intermediate_size=32,
            num_heads=2,
            out_hidden_size=32,
            fullatt_block_indexes=[0],
        ),
        **{
            k: ids[k]
            for k in (
                "image_token_id",
                "video_token_id",
                "vision_start_token_id",
                "vision_end_token_id",
            )
        },
    )
    config = Qwen2_5_VLConfig.from_hf_dict(hf.to_dict())
    return Qwen25VLEncode(tok, build_processor(tok).image_processor, config)


def timed(fn):
    start = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--size", type=int, default=128, help="synthetic frame side (px)")
    p.add_argument("--frames", type=int, nargs=2, default=(16, 24))
    p.add_argument("--num-frames", type=int, default=8, help="frames per clip")
    p.add_argument("--resize", type=int, default=112, help="model input side (px)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--encode", choices=["bytes", "qwen"], default="bytes")
    p.add_argument("--data", type=Path, default=None, help="reuse a synthetic split here")
    args = p.parse_args()

    from jaxseg.data.encode import ByteEncode
    from jaxseg.data.pipeline import PipelineConfig, build_dataset
    from jaxseg.data.readers import read_revos
    from jaxseg.data.synth import SynthConfig, write_benchmark

    tmp = None
    root = args.data
    if root is None or not (root / "meta_expressions_valid_.json").exists():
        if root is None:
            tmp = tempfile.TemporaryDirectory()
            root = Path(tmp.name)
        cfg = SynthConfig.preset("medium", size=args.size, frames=tuple(args.frames))
        t0 = time.perf_counter()
        write_benchmark(
            root, {"valid": args.videos}, seed=0, cfg=cfg, progress=False, overwrite=True
        )
        print(f"generated {args.videos} videos in {time.perf_counter() - t0:.1f} s")
    index = read_revos(root, "valid")
    n_videos = len({r.video_id for r in index})
    encode = qwen_encode() if args.encode == "qwen" else ByteEncode()
    size = (args.resize, args.resize)
    print(
        f"{len(index)} clips from {n_videos} videos; {args.num_frames} frames/clip, "
        f"{args.resize}px, encode={args.encode}"
    )

    def run_reference():
        return sum(1 for _ in reference_clips(index, args.num_frames, size, encode, 0))

    def run_jaxseg(workers):
        def go():
            cfg = PipelineConfig(
                num_frames=args.num_frames,
                sampling="keyframe",
                frame_size=size,
                batch_size=args.batch,
                worker_count=workers,
            )
            it = iter(build_dataset(index, cfg, encode, seed=0))
            n = len(next(it)["video_id"])
            first[workers] = time.perf_counter() - start[workers]
            return n + sum(len(b["video_id"]) for b in it)

        def timed_go():
            start[workers] = time.perf_counter()
            return timed(go)

        return timed_go

    first, start = {}, {}
    # warm-up (lazy imports such as jax inside the rope module, PIL plugins) outside the timing
    for _ in reference_clips(index[:4], args.num_frames, size, encode, 0):
        pass
    rows = [("reference loop", *timed(run_reference), None)]
    for workers in sorted({0, args.workers}):
        rows.append((f"jaxseg, {workers} workers", *run_jaxseg(workers)(), workers))
    ref_rate = rows[0][1] / rows[0][2]
    print(
        f"{'loader':<22}{'clips':>7}{'sec':>8}{'clips/s':>9}{'videos/s':>10}{'vs ref':>8}"
        f"{'1st batch s':>13}"
    )
    for name, n, sec, workers in rows:
        rate = n / sec
        lat = "" if workers is None else f"{first[workers]:>13.2f}"
        print(
            f"{name:<22}{n:>7}{sec:>8.2f}{rate:>9.1f}{rate * n_videos / len(index):>10.1f}"
            f"{rate / ref_rate:>7.2f}x{lat}"
        )
    print("videos/s = clips/s x videos/clips (each video has several expressions)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
