"""Overlay pictures: mark colour, contours, boxes on the keyframe, captions, side-by-side
panels, GIF/MP4 writing."""

import numpy as np
import pytest

from jaxseg.data.synth.world import COLOURS
from jaxseg.viz import Answer, annotate_frame, annotate_video, read_video, write_video
from jaxseg.viz.overlay import (
    KEY,
    MARK_CANDIDATES,
    draw_contour,
    pick_mark_colour,
    pick_positions,
    scale_for,
)


def scene(t=3, size=32):
    """Grey frames with a synthetic-palette square (the target) and a white one."""
    frames = np.full((t, size, size, 3), 90, np.uint8)
    frames[:, 4:12, 4:12] = COLOURS["red"]
    frames[:, 20:28, 20:28] = (255, 255, 255)
    masks = np.zeros((t, size, size), bool)
    masks[:, 4:12, 4:12] = True
    return frames, masks


def distance(a, b):
    return float(np.sqrt(((np.asarray(a, float) - np.asarray(b, float)) ** 2).sum()))


def test_mark_colour_is_used_by_no_object():
    frames, _ = scene()
    colour = pick_mark_colour(frames)
    assert colour != (255, 255, 255)  # white is taken by an object here
    for used in [(90, 90, 90), COLOURS["red"], (255, 255, 255)]:
        assert distance(colour, used) >= 100
    # the synthetic world's whole palette on its darkest/lightest backgrounds: white is free
    palette = np.array([[list(c) for c in COLOURS.values()] + [[45] * 3, [165] * 3]], np.uint8)
    assert pick_mark_colour(palette) == MARK_CANDIDATES[0] == (255, 255, 255)


def test_contour_marks_only_the_mask_boundary():
    frames, masks = scene()
    colour = (0, 255, 0)
    out = draw_contour(frames[0], masks[0], colour, width=1)
    edge = masks[0].copy()
    edge[5:11, 5:11] = False
    assert (out[edge] == colour).all()
    np.testing.assert_array_equal(out[5:11, 5:11], frames[0, 5:11, 5:11])  # inside untouched
    np.testing.assert_array_equal(out[14:, 14:], frames[0, 14:, 14:])  # far away untouched


def test_side_by_side_panels_caption_and_keyframe():
    frames, masks = scene()
    answer = Answer(keyframe=1, boxes=((4.0, 4.0, 11.0, 11.0),))
    scale = scale_for(32, 32)
    kwargs = dict(query="the red square", answer=answer, num_frames=3, scale=scale)
    key = annotate_frame(frames[1], masks[1], gt_mask=masks[1], frame_index=1, **kwargs)
    other = annotate_frame(frames[0], masks[0], gt_mask=masks[0], frame_index=0, **kwargs)
    alone = annotate_frame(frames[0], masks[0], frame_index=0, **kwargs)
    panel = 32 * scale
    assert key.shape[1] == other.shape[1] == 2 * panel + 4  # GT | gap | prediction
    assert alone.shape[1] == panel
    # the keyframe is framed in the marker colour; other frames are not
    assert (key[-1, :] == KEY).all() and not (other[-1, :] == KEY).all()
    # a long query is wrapped onto more caption lines, not cut
    long = annotate_frame(frames[0], masks[0], frame_index=0, scale=scale,
                          query="the shape that stops after colliding with " * 4)  # fmt: skip
    assert long.shape[0] > alone.shape[0]


def test_box_is_drawn_on_the_keyframe_only():
    frames, _ = scene()
    empty = np.zeros(frames.shape[:3], bool)
    colour = pick_mark_colour(frames)
    answer = Answer(keyframe=2, boxes=((14.0, 2.0, 18.0, 30.0),))
    video = annotate_video(frames, empty, query="q", answer=answer)
    scale = scale_for(32, 32)
    bottom = video.shape[1] - 32 * scale  # the caption bar is above the panel
    column = video[:, bottom + 10 * scale : bottom + 20 * scale, 14 * scale + 1]
    assert (column[2] == colour).all(axis=-1).any()
    assert not (column[0] == colour).all(axis=-1).any()


def test_no_target_and_positions():
    assert Answer(no_target=True).describe() == "answer: no target"
    assert Answer.from_json({"keyframe": 3, "boxes": [[1, 2, 3, 4]], "points": [[1, float("nan")]],
                             "no_target": False}).points == ()  # fmt: skip
    assert 7 in pick_positions(20, 7, 3) and len(pick_positions(20, 7, 3)) == 3
    assert pick_positions(2, None, 5) == [0, 1]


@pytest.mark.parametrize("ext", ["gif", "mp4", "webm"])
def test_video_files_round_trip(tmp_path, ext):
    frames, masks = scene(t=4)
    video = annotate_video(frames, masks, gt_masks=masks, query="q", answer=Answer(keyframe=0))
    path = write_video(video, tmp_path / f"v.{ext}", fps=5)
    back = read_video(path)
    assert back.shape[0] == 4
    assert back.shape[1] >= video.shape[1] and back.shape[2] >= video.shape[2]
    if ext == "gif":
        assert np.abs(back.astype(int) - video.astype(int)).mean() < 3
    with pytest.raises(ValueError, match="gif, .mp4 or .webm"):
        write_video(video, tmp_path / "v.avi")
