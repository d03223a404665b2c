"""Frames -> GIF / MP4 files or bytes (imageio; MP4 through imageio-ffmpeg's bundled
ffmpeg), and inline display in notebooks."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np


def _frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or len(frames) == 0:
        raise ValueError(f"expected frames [T, H, W, 3], got shape {frames.shape}")
    return np.ascontiguousarray(frames[..., :3].astype(np.uint8))


def gif_bytes(frames, fps: float = 6, colours: int = 128) -> bytes:
    """An endlessly looping GIF of `frames` [T, H, W, 3] uint8, all frames on one palette
    of `colours` built from the whole clip, without dithering (flat areas stay flat, so the
    file is a fraction of a per-frame-palette GIF of JPEG-decoded frames)."""
    from PIL import Image

    frames = _frames(frames)
    t, h, w, _ = frames.shape
    step = max(1, t // 16)  # the palette sees up to ~16 frames, keyframe borders included
    sample = Image.fromarray(np.ascontiguousarray(frames[::step].reshape(-1, w, 3)))
    palette = sample.quantize(colors=colours, dither=Image.Dither.NONE)
    images = [
        Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames
    ]
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=int(round(1000 / fps)),
        loop=0,
    )
    return buf.getvalue()


def webm_bytes(frames, fps: float = 6) -> bytes:
    """A VP9 WebM of `frames` (sides padded to a multiple of 16): about a tenth of the GIF's
    size, which is what keeps the trace viewer's pages small."""
    import imageio.v3 as iio

    return iio.imwrite(
        "<bytes>",
        _pad_to(_frames(frames), 16),
        extension=".webm",
        plugin="FFMPEG",
        fps=fps,
        codec="libvpx-vp9",
        pixelformat="yuv420p",
        macro_block_size=16,
        output_params=["-crf", "34", "-b:v", "0"],
    )


def _pad_to(frames: np.ndarray, multiple: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return frames
    return np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")


def write_video(frames, path: str | Path, fps: float = 6) -> Path:
    """Writes `frames` [T, H, W, 3] as .gif (looping), .mp4 (H.264) or .webm (VP9); video
    sides are padded to a multiple of 16 so no player or encoder rescales them. Returns the
    path."""
    import imageio.v3 as iio

    path = Path(path)
    frames = _frames(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        path.write_bytes(gif_bytes(frames, fps))
    elif suffix == ".webm":
        path.write_bytes(webm_bytes(frames, fps))
    elif suffix == ".mp4":
        iio.imwrite(
            path,
            _pad_to(frames, 16),
            plugin="FFMPEG",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=16,
        )
    else:
        raise ValueError(f"{path}: write .gif, .mp4 or .webm")
    return path


def read_video(path: str | Path) -> np.ndarray:
    """[T, H, W, 3] uint8 frames of a GIF / MP4 (the inverse of :func:`write_video`)."""
    import imageio.v3 as iio

    path = Path(path)
    if path.suffix.lower() in (".mp4", ".webm"):
        return np.stack([np.asarray(f)[..., :3] for f in iio.imiter(path, plugin="FFMPEG")])
    return np.stack([np.asarray(f)[..., :3] for f in iio.imiter(path)])


def gif_data_uri(frames, fps: float = 6) -> str:
    return "data:image/gif;base64," + base64.b64encode(gif_bytes(frames, fps)).decode()


def webm_data_uri(frames, fps: float = 6) -> str:
    return "data:video/webm;base64," + base64.b64encode(webm_bytes(frames, fps)).decode()


def png_data_uri(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def show_video(frames, fps: float = 6, width: int | None = None):
    """Displays `frames` inline in a notebook as a looping GIF (kept in the saved notebook
    and in nbconvert's HTML, unlike a file link)."""
    from IPython.display import HTML, display

    style = f' width="{width}"' if width else ""
    display(HTML(f'<img src="{gif_data_uri(frames, fps)}"{style}/>'))
