"""SAM2 sidecar: propagation frames/s and transport overhead vs in-process sam2, side by side.

Runs the same prompt + forward/backward propagation three ways on the same clip:
  1. in process: `Sam2Backend` (sam2's SAM2VideoPredictor) called directly, no IPC;
  2. through the sidecar: `SidecarClient.segment`, wall time seen by the client;
  3. the sidecar's own compute time for that call (reported in its reply).
Transport overhead = (client wall - sidecar compute) / sidecar compute: socket round trip,
JSON header, bit-packed masks back, unpacking. Registration (frames -> shared memory -> sidecar
preprocessing) happens once per clip and is reported separately. Also reports batching:
G requests on one clip in one call vs G calls (GRPO groups share the image encoder).

    python bench/bench_sidecar.py                    # tiny model, 256 px, 32 frames, 1 thread
    python bench/bench_sidecar.py --model t --image-size 512 --random-init
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from jaxseg.segmenter.interface import MaskRequest, ObjectPrompt
from jaxseg.segmenter.sidecar import SidecarClient, SidecarConfig


def make_clip(t: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.integers(60, 140, (t, size, size, 3), dtype=np.uint8)
    s = size // 8
    for i in range(t):
        x = s + (i * size // (2 * t))
        frames[i, 2 * s : 4 * s, x : x + 2 * s] = (220, 40, 40)
    return frames


def request(handle, t: int, size: int, jitter: float = 0.0) -> MaskRequest:
    s = size // 8
    k = t // 2
    x = s + (k * size // (2 * t))
    box = (x - 1.0 + jitter, 2 * s - 1.0, x + 2 * s + 1.0, 4 * s + 1.0)
    return MaskRequest(handle, k, (ObjectPrompt(0, box=box),), "both")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--frame-size", type=int, default=256, help="clip H = W in pixels")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (2-thread OpenMP on a busy 2-core box thrashes)",
    )
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--group", type=int, default=4, help="requests per batched call")
    ap.add_argument("--feature-cache-frames", type=int, default=0)
    args = ap.parse_args()

    cfg = {
        "model": args.model,
        "image_size": args.image_size,
        "random_init": args.random_init,
        "checkpoint": args.checkpoint,
        "device": args.device,
        "num_threads": args.threads,
        "feature_cache_frames": args.feature_cache_frames,
    }
    t, size = args.frames, args.frame_size
    frames = make_clip(t, size)

    import torch

    from jaxseg.segmenter.sam2_backend import Sam2Backend, Sam2Config

    torch.set_num_threads(args.threads)
    local = Sam2Backend(Sam2Config(**cfg))
    client = SidecarClient(SidecarConfig(backend="sam2", backend_config=cfg, timeout_s=3600))
    t0 = time.perf_counter()
    client.start()
    start_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    h_local = local.register_video(frames)
    reg_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    h_side = client.register_video(frames)
    reg_side = time.perf_counter() - t0

    local_s, wall_s, compute_s = [], [], []
    same = True
    for _ in range(args.reps):  # interleaved so machine load hits both alike
        t0 = time.perf_counter()
        (a,) = local.segment([request(h_local, t, size)])
        local_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        (b,) = client.segment([request(h_side, t, size)])
        wall_s.append(time.perf_counter() - t0)
        compute_s.append(client.last_compute_s)
        same &= bool(np.array_equal(a.object_masks, b.object_masks))

    g = args.group
    group = [request(h_side, t, size, jitter=2.0 * i) for i in range(g)]
    t0 = time.perf_counter()
    for r in group:
        client.segment([r])
    one_by_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.segment(group)
    batched = time.perf_counter() - t0
    client.close()

    med = statistics.median
    overhead = [(w - c) / c for w, c in zip(wall_s, compute_s)]
    print(
        f"config: model={args.model} image_size={args.image_size} device={args.device} "
        f"threads={args.threads} clip={t}x{size}x{size} 1 object, keyframe {t // 2}, both directions"
    )
    print(f"sidecar start-up            {start_s:8.3f} s")
    print(f"register clip  in-process   {reg_local:8.3f} s   sidecar (shm) {reg_side:8.3f} s")
    print(
        f"propagate      in-process   {med(local_s):8.3f} s   sidecar wall  {med(wall_s):8.3f} s"
        f"   sidecar compute {med(compute_s):8.3f} s   (medians of {args.reps})"
    )
    print(
        f"frames/s       in-process   {t / med(local_s):8.2f}     sidecar       {t / med(wall_s):8.2f}"
    )
    print(
        f"transport overhead (wall - compute) / compute: median {100 * med(overhead):.2f}% "
        f"max {100 * max(overhead):.2f}%  ({1000 * med([w - c for w, c in zip(wall_s, compute_s)]):.1f} ms)"
    )
    print(f"sidecar wall / in-process: {med(wall_s) / med(local_s):.3f}x; identical masks: {same}")
    print(
        f"batching: {g} requests one by one {one_by_one:.3f} s, one call {batched:.3f} s "
        f"-> {one_by_one / batched:.2f}x"
    )


if __name__ == "__main__":
    main()
