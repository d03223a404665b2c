"""The scene graph: per-object, per-frame attributes and an event list, read off the
simulated states and the rendered masks (not off the plan), so it describes what a viewer
of the frames can see.

The graph is a plain JSON-able dict (it is written to the sidecar file as is):

    {"num_frames": T, "height": H, "width": W,
     "objects": [{"obj_id", "shape", "depth", "colour": [T], "size": [T],
                  "centre": [T][2], "in_frame": [T], "full_area": [T], "visible_area": [T],
                  "resting": [T]}],
     "events": [{"type", "frame", "objects": [...], ...}]}   sorted by (frame, type)

Event types: enter, exit, stop, start, collide (two objects), colour_change (from, to),
size_change (from, to), hide (objects [hidden, occluder], frame..end inclusive,
occluder_moving: whether the occluder moves while it covers the object).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxseg.data.synth.render import Rendered
from jaxseg.data.synth.simulate import Scene
from jaxseg.data.synth.world import COLOUR_NAMES, SIZE_NAMES

HIDDEN_FRACTION = 0.25  # visible area at most this fraction of the in-frame footprint
_MIN_RUN = 2  # frames a rest/motion state must last around a stop/start


def build_scene_graph(scene: Scene, rendered: Rendered) -> dict[str, Any]:
    T, N, S = scene.num_frames, scene.num_objects, scene.size
    full_area = rendered.full.sum(axis=(2, 3))  # [N, T]
    visible_area = rendered.visible.sum(axis=(2, 3))
    in_frame = full_area > 0
    # resting[t]: the object does not move between t and t+1 (last frame copies the one before)
    step = np.linalg.norm(np.diff(scene.pos, axis=0), axis=-1)  # [T-1, N]
    resting = np.concatenate([step <= 1e-6, step[-1:] <= 1e-6], axis=0).T  # [N, T]

    objects = []
    for i in range(N):
        objects.append(
            {
                "obj_id": i,
                "shape": scene.shapes[i],
                "depth": int(scene.depth[i]),
                "colour": [COLOUR_NAMES[c] for c in scene.colour[:, i]],
                "size": [SIZE_NAMES[c] for c in scene.size_class[:, i]],
                "centre": [[round(float(x), 2), round(float(y), 2)] for x, y in scene.pos[:, i]],
                "in_frame": [bool(v) for v in in_frame[i]],
                "full_area": [int(v) for v in full_area[i]],
                "visible_area": [int(v) for v in visible_area[i]],
                "resting": [bool(v) for v in resting[i]],
            }
        )

    events: list[dict[str, Any]] = []
    for i in range(N):
        inf = in_frame[i]
        if inf.any() and not inf[0]:
            events.append({"type": "enter", "frame": int(np.argmax(inf)), "objects": [i]})
        if inf.any() and not inf[-1]:
            last = T - 1 - int(np.argmax(inf[::-1]))
            events.append({"type": "exit", "frame": last + 1, "objects": [i]})
        rest = resting[i]
        for t in range(1, T):
            if rest[t] == rest[t - 1] or not (inf[t] and inf[t - 1]):
                continue
            before = rest[max(0, t - _MIN_RUN) : t]
            after = rest[t : t + _MIN_RUN]
            if rest[t] and not before.any() and after.all():
                events.append({"type": "stop", "frame": t, "objects": [i]})
            elif not rest[t] and before.all() and not after.any():
                events.append({"type": "start", "frame": t, "objects": [i]})
        for t in range(1, T):
            if not (inf[t] and inf[t - 1]):
                continue
            if scene.colour[t, i] != scene.colour[t - 1, i]:
                events.append(
                    {
                        "type": "colour_change",
                        "frame": t,
                        "objects": [i],
                        "from": COLOUR_NAMES[scene.colour[t - 1, i]],
                        "to": COLOUR_NAMES[scene.colour[t, i]],
                    }
                )
            if scene.size_class[t, i] != scene.size_class[t - 1, i]:
                events.append(
                    {
                        "type": "size_change",
                        "frame": t,
                        "objects": [i],
                        "from": SIZE_NAMES[scene.size_class[t - 1, i]],
                        "to": SIZE_NAMES[scene.size_class[t, i]],
                    }
                )
        events.extend(_hide_events(i, scene, rendered, full_area, visible_area))
    for t, i, j in scene.collisions:
        if in_frame[i, t] and in_frame[j, t]:
            events.append({"type": "collide", "frame": int(t), "objects": [int(i), int(j)]})
    events.sort(key=lambda e: (e["frame"], e["type"], e["objects"]))
    return {"num_frames": T, "height": S, "width": S, "objects": objects, "events": events}


def _hide_events(
    i: int, scene: Scene, rendered: Rendered, full_area: np.ndarray, visible_area: np.ndarray
) -> list[dict[str, Any]]:
    """Maximal runs of frames where object i is in the frame but mostly covered, per occluder."""
    T = scene.num_frames
    runs: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    front = [j for j in range(scene.num_objects) if scene.depth[j] > scene.depth[i]]
    for t in range(T):
        occluder = None
        fa = full_area[i, t]
        if fa > 0 and visible_area[i, t] <= HIDDEN_FRACTION * fa and front:
            overlaps = [int((rendered.full[j, t] & rendered.full[i, t]).sum()) for j in front]
            best = int(np.argmax(overlaps))
            # the main occluder must cover most of the footprint on its own
            if overlaps[best] >= 0.5 * fa:
                occluder = front[best]
        if current is not None and occluder == current["objects"][1] and current["end"] == t - 1:
            current["end"] = t
            continue
        if current is not None:
            runs.append(current)
            current = None
        if occluder is not None:
            current = {"type": "hide", "frame": t, "end": t, "objects": [i, occluder]}
    if current is not None:
        runs.append(current)
    for run in runs:  # does the occluder move over it ("passes") or does it go behind?
        o = run["objects"][1]
        steps = np.linalg.norm(
            np.diff(scene.pos[max(0, run["frame"] - 1) : run["end"] + 1, o], axis=0), axis=-1
        )
        run["occluder_moving"] = bool((steps > 1e-6).any())
    return runs
