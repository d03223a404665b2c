"""`jaxseg segment`: one video + one query -> masks, an overlay GIF and the reasoning trace.

    jaxseg segment --video clip.gif --query "the ball that bounces last" --checkpoint runs/demo
    jaxseg segment --video frames/ --query "..." --checkpoint runs/demo --protocol o3 --out seg/

The policy is the run's newest trained stage (grpo, else sft) behind the sampler, decoding
greedily; one episode of the protocol (the run's unless --protocol) is played on the frames
and its final action prompts the mask backend (the run's unless --backend). There is no
ground truth, so there is no reward (jaxseg.protocols.episode.predict_episodes).

Writes <out>/masks/<frame>.png (0/255), <out>/overlay.gif and <out>/overlay.mp4 (the mask's
contour in a colour no object uses, a caption with the query, frame index, keyframe marker and
the answered box or "no target"; boxes/points drawn on the keyframe; jaxseg.viz) and
<out>/trace.json (turns, parsed actions, final action), and prints the trace.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--video", required=True, help="a directory of frames (sorted by name), or a GIF/MP4"
    )
    parser.add_argument("--query", required=True, help="what to segment, in words")
    parser.add_argument("--checkpoint", required=True, help="run directory (jaxseg train/demo)")
    parser.add_argument("--protocol", default=None, help="veason | rcot | o3 | revseg (run's)")
    parser.add_argument(
        "--backend", choices=("classical", "sam2"), default=None, help="mask backend (run's)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, help="per turn (run's)")
    parser.add_argument("--out", default="segment_out", help="output directory")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs (masks/, overlays, trace.json) of an earlier run in --out",
    )


# ----------------------------------------------------------------------------- frames
def load_video(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """[T, H, W, 3] uint8 frames and a name per frame (file stems, or 00000.. for a video)."""
    from jaxseg.data.readers.images import load_rgb

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--video {path}: no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not files:
            raise ValueError(f"--video {path}: no frames ({'/'.join(FRAME_SUFFIXES)}) in it")
        frames = [load_rgb(p) for p in files]
        names = [p.stem for p in files]
    else:
        frames = _decode_video_file(path)
        names = [f"{i:05d}" for i in range(len(frames))]
    sizes = {f.shape for f in frames}
    if len(sizes) != 1:
        raise ValueError(f"--video {path}: frames differ in size {sorted(sizes)}")
    return np.stack(frames), names


IMAGE_SUFFIXES = (".gif", ".png", ".apng", ".webp", ".tif", ".tiff", *FRAME_SUFFIXES)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _decode_video_file(path: Path) -> list[np.ndarray]:
    """GIF (and anything else PIL reads as a multi-frame image) via PIL; MP4 etc. via
    imageio when it is installed. A truncated or unreadable file is a ValueError whose
    one-line message says what is wrong with it (never a traceback)."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            kind = image.format or path.suffix.lstrip(".").upper()
            frames = []
            try:
                for f in ImageSequence.Iterator(image):
                    frames.append(np.asarray(f.convert("RGB")))
            except (OSError, ValueError, EOFError, SyntaxError) as exc:
                raise ValueError(
                    f"--video {path}: truncated or corrupt {kind} file: frame {len(frames)} "
                    f"cannot be decoded ({_one_line(exc)})"
                ) from None
            if not frames:
                raise ValueError(f"--video {path}: {kind} file holds no frames")
            return frames
    except UnidentifiedImageError:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            head = path.read_bytes()[:8] if path.is_file() else b""
            raise ValueError(
                f"--video {path}: not a readable {path.suffix.lstrip('.').upper()} file "
                f"(no image signature; it starts with {head!r}: truncated or another format)"
            ) from None
    except OSError as exc:  # unreadable file (permissions, a directory-like path, I/O)
        raise ValueError(f"--video {path}: cannot read it ({_one_line(exc)})") from None
    try:
        import imageio.v3 as iio
    except ImportError:
        raise ValueError(
            f"--video {path}: PIL cannot read {path.suffix or 'this'} files and imageio (with "
            "its ffmpeg plugin) is not installed; install imageio[ffmpeg], or extract the "
            f"frames first (ffmpeg -i {path} frames/%05d.jpg) and pass the directory"
        ) from None
    try:
        frames = [np.asarray(f)[..., :3].astype(np.uint8) for f in iio.imiter(path)]
    except Exception as exc:  # imageio raises plugin-specific errors
        raise ValueError(
            f"--video {path}: neither PIL nor imageio can decode it ({_one_line(exc)})"
        ) from None
    if not frames:
        raise ValueError(f"--video {path}: holds no frames")
    return frames


# ----------------------------------------------------------------------------- outputs
OUTPUTS = ("masks", "trace.json", "overlay.gif", "overlay.mp4")


def check_out(out: Path, *, overwrite: bool) -> None:
    """Refuses an --out that holds the outputs of an earlier run (its masks would mix with
    this video's) unless `overwrite`; other files in it are left alone."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"jaxseg segment: --out {out}: exists and is not a folder")
    found = [name for name in OUTPUTS if (out / name).exists()]
    if found and not overwrite:
        raise SystemExit(
            f"jaxseg segment: --out {out} already holds {', '.join(found)} of an earlier run; "
            "pass --overwrite to replace them, or choose another folder"
        )


def clear_outputs(out: Path) -> None:
    import shutil

    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_masks(masks: np.ndarray, names: list[str], out: Path) -> Path:
    """masks [T, H, W] bool -> out/masks/<name>.png (0/255 grey)."""
    from PIL import Image

    folder = out / "masks"
    folder.mkdir(parents=True, exist_ok=True)
    for mask, name in zip(masks, names):
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(folder / f"{name}.png")
    return folder


def write_overlays(
    frames: np.ndarray, masks: np.ndarray, out: Path, *, query: str, final: dict, fps: float = 6
) -> list[Path]:
    """out/overlay.gif and out/overlay.mp4: the captioned prediction on every frame
    (jaxseg.viz.overlay.annotate_video; there is no ground truth here)."""
    from jaxseg.viz import Answer, annotate_video, write_video

    video = annotate_video(frames, masks, query=query, answer=Answer.from_json(final))
    return [write_video(video, out / f"overlay.{ext}", fps) for ext in ("gif", "mp4")]


def format_trace(trace: dict) -> str:
    lines = [f'query: "{trace["query"]}"  protocol: {trace["protocol"]}']
    for t in trace["turns"]:
        cut = ", cut at the token limit" if t["policy_info"].get("truncated") else ""
        lines.append(f"--- turn {t['index']} ({t['step']}, parse {t['parse_status']}{cut})")
        lines.append(t["response"])
    f = trace["final"]
    lines.append(
        "--- final: no target"
        if f["no_target"]
        else f"--- final: keyframe {f['keyframe']} boxes {f['boxes']}"
        + (" (parse failed: fallback)" if f["fallback"] else "")
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command
def segment(
    exp, frames: np.ndarray, query: str, *, protocol=None, backend=None, max_new_tokens: int
):
    """One greedy episode of `exp`'s loaded policy on `frames` -> its EpisodeTrace (with
    pred_masks [T, H, W]). protocol/backend default to the experiment's."""
    from jaxseg.protocols.episode import predict_episodes
    from jaxseg.protocols.sample import EpisodeSample
    from jaxseg.sampling.filters import SamplingParams

    t, h, w = frames.shape[:3]
    sample = EpisodeSample(
        key="segment/0",
        query=query,
        frames=frames,
        object_masks=np.zeros((0, t, h, w), bool),  # no ground truth at inference
        frame_ids=tuple(range(t)),
    )
    policy = exp.policy(
        sampling=SamplingParams(temperature=0.0), max_new_tokens=max_new_tokens, seed=0
    )
    (trace,) = predict_episodes(
        protocol or exp.eval_protocol, policy, [sample], backend=backend or exp.backend
    )
    return trace


def run(args: argparse.Namespace) -> int:
    from jaxseg.protocols.registry import make_eval_protocol
    from jaxseg.segmenter import make_backend
    from jaxseg.train.trainer import Experiment

    run_dir = Path(args.checkpoint)
    if not (run_dir / "config.json").is_file():
        raise SystemExit(f"--checkpoint {run_dir}: not a jaxseg run directory (no config.json)")
    out = Path(args.out)
    check_out(out, overwrite=args.overwrite)  # before the (slow) load
    try:
        frames, names = load_video(args.video)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"jaxseg segment: {_one_line(err)}") from None
    print(f"video: {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}", file=sys.stderr)

    t0 = time.perf_counter()
    print(f"loading the policy from {run_dir} ...", file=sys.stderr)
    exp = Experiment.from_workdir(run_dir, progress=False)
    stage = exp.load_latest()
    if stage == "init":
        raise SystemExit(f"--checkpoint {run_dir}: no sft or grpo checkpoint in it")
    print(f"  {stage} policy loaded ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    cfg = exp.config
    protocol = None
    if args.protocol and args.protocol != cfg.protocol.name:
        protocol = make_eval_protocol(args.protocol)
    backend = None
    if args.backend and args.backend != cfg.segmenter.backend:
        backend = make_backend(args.backend)
    max_new = args.max_new_tokens or int(cfg.grpo.max_new_tokens)

    t1 = time.perf_counter()
    print("running the episode (greedy) and the mask backend ...", file=sys.stderr)
    trace = segment(
        exp, frames, args.query, protocol=protocol, backend=backend, max_new_tokens=max_new
    )
    print(f"  done ({time.perf_counter() - t1:.0f} s)", file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    clear_outputs(out)  # empty, or --overwrite: no mask of an earlier video survives
    record = trace.to_json()
    record.update(checkpoint=str(run_dir), stage=stage, video=str(args.video), frames=names)
    del record["reward"], record["sample_key"], record["sample_index"]
    for turn in record["turns"]:  # the prompt's token ids are long and say nothing new
        turn["policy_info"].pop("segment_ids", None)
    (out / "trace.json").write_text(json.dumps(record, indent=2))
    write_masks(trace.pred_masks, names, out)
    gif, mp4 = write_overlays(
        frames, trace.pred_masks, out, query=args.query, final=record["final"]
    )
    print(format_trace(record))
    area = trace.pred_masks.reshape(len(frames), -1).mean(axis=1)
    print(
        f"\nmasks: {out / 'masks'} (target on {int((area > 0).sum())}/{len(frames)} frames), "
        f"overlay: {gif} and {mp4}, trace: {out / 'trace.json'}"
    )
    return 0
