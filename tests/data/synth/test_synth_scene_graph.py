"""Events read off hand-made scenes; rendering and physics invariants on sampled ones."""

from __future__ import annotations

import numpy as np

from jaxseg.data.synth import SynthConfig
from jaxseg.data.synth.render import render, sample_background
from jaxseg.data.synth.scene_graph import build_scene_graph
from jaxseg.data.synth.shapes import circumradius, footprint
from jaxseg.data.synth.simulate import Scene, simulate
from jaxseg.data.synth.world import COLOUR_NAMES, COLOURS, SIZE_NAMES

S = 40


def scene(xs, ys, shapes, depth, radius, colours=None, sizes=None, collisions=()):
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)  # [T, N]
    T, N = xs.shape
    colour = np.asarray(colours if colours is not None else np.zeros((T, N), int))
    size = np.asarray(sizes if sizes is not None else np.ones((T, N), int))
    return Scene(
        size=S,
        shapes=list(shapes),
        depth=np.asarray(depth),
        pos=np.stack([xs, ys], axis=-1),
        radius=np.broadcast_to(np.asarray(radius, float), (T, N)).copy(),
        colour=colour,
        size_class=size,
        collisions=list(collisions),
        plan={},
    )


def graph_of(sc):
    bg = np.zeros((S, S, 3), np.uint8)
    r = render(sc, bg)
    return build_scene_graph(sc, r), r


def events(g, kind):
    return [(e["frame"], e["objects"]) for e in g["events"] if e["type"] == kind]


def test_enter_and_exit_frames_follow_the_footprint():
    # a circle of radius 5 moving right 6 px per frame, starting well outside
    xs = [[-20.0 + 6 * t] for t in range(12)]
    ys = [[20.0]] * 12
    sc = scene(xs, ys, ["circle"], [0], 5.0)
    g, _ = graph_of(sc)
    inside = [footprint("circle", x[0], 20.0, 5.0, S, S).any() for x in xs]
    first, last = inside.index(True), len(inside) - 1 - inside[::-1].index(True)
    assert events(g, "enter") == [(first, [0])]
    assert events(g, "exit") == [(last + 1, [0])]
    assert g["objects"][0]["in_frame"] == inside


def test_occlusion_hides_the_object_behind():
    # a large square sweeps over a small static circle; frame 3 covers it completely
    xs = [[20.0, 20.0 + 5 * (t - 3)] for t in range(7)]
    ys = [[20.0, 20.0]] * 7
    sc = scene(xs, ys, ["circle", "square"], [0, 1], [[3.0, 10.0]])
    g, r = graph_of(sc)
    hides = [e for e in g["events"] if e["type"] == "hide"]
    assert hides and all(e["objects"] == [0, 1] and e["occluder_moving"] for e in hides)
    assert any(e["frame"] <= 3 <= e["end"] for e in hides)
    assert g["objects"][0]["visible_area"][3] == 0 and g["objects"][0]["full_area"][3] > 0
    # visible masks partition the painted pixels
    assert (r.visible.sum(axis=0) <= 1).all()
    np.testing.assert_array_equal(r.visible.any(axis=0), r.label >= 0)


def test_stop_start_and_attribute_changes():
    xs = [[10, 30], [12, 30], [14, 30], [16, 30], [16, 31], [16, 32], [16, 33]]
    ys = [[10, 30]] * 7
    colours = [[0, 1]] * 4 + [[2, 1]] * 3
    sizes = [[1, 0]] * 5 + [[1, 2]] * 2
    sc = scene(xs, ys, ["square", "star"], [0, 1], 4.0, colours=colours, sizes=sizes)
    g, _ = graph_of(sc)
    assert events(g, "stop") == [(3, [0])]
    assert events(g, "start") == [(3, [1])]  # it leaves frame 3's position
    (cc,) = [e for e in g["events"] if e["type"] == "colour_change"]
    assert (cc["frame"], cc["from"], cc["to"]) == (4, COLOUR_NAMES[0], COLOUR_NAMES[2])
    (sz,) = [e for e in g["events"] if e["type"] == "size_change"]
    assert (sz["frame"], sz["from"], sz["to"]) == (5, SIZE_NAMES[0], SIZE_NAMES[2])


def test_rendered_pixels_carry_the_object_colour():
    cfg = SynthConfig(size=64, frames=(8, 8))
    rng = np.random.default_rng(4)
    sc = simulate(rng, cfg)
    bg, _ = sample_background(rng, cfg)
    r = render(sc, bg)
    for i in range(sc.num_objects):
        for t in range(sc.num_frames):
            want = COLOURS[COLOUR_NAMES[sc.colour[t, i]]]
            assert (r.frames[t][r.visible[i, t]] == want).all()
    np.testing.assert_array_equal(
        r.frames[:, r.label.max(axis=0) < 0],
        np.broadcast_to(bg[r.label.max(axis=0) < 0], r.frames[:, r.label.max(axis=0) < 0].shape),
    )


def test_physics_invariants_on_sampled_scenes():
    cfg = SynthConfig(size=96, frames=(16, 20))
    for seed in range(15):
        sc = simulate(np.random.default_rng(seed), cfg)
        for t, i, j in sc.collisions:  # contacts happen at touching distance
            d = np.linalg.norm(sc.pos[t, i] - sc.pos[t, j])
            reach = sc.radius[t, i] * circumradius(sc.shapes[i])
            reach += sc.radius[t, j] * circumradius(sc.shapes[j])
            assert d < reach + 0.5
        for i, o in enumerate(sc.plan["objects"]):
            if o["static"]:
                assert np.ptp(sc.pos[:, i], axis=0).max() == 0
        assert len(set(sc.depth.tolist())) == sc.num_objects
