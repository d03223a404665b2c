"""Pictures of episodes: captioned mask/box overlays (`overlay`), GIF/MP4 writing (`video`)
and the self-contained HTML trace viewer (`viewer`, `jaxseg view RUN`)."""

from .overlay import Answer, annotate_frame, annotate_video, pick_mark_colour
from .video import gif_bytes, read_video, show_video, write_video

__all__ = [
    "Answer",
    "annotate_frame",
    "annotate_video",
    "gif_bytes",
    "pick_mark_colour",
    "read_video",
    "show_video",
    "write_video",
]
