import os
import socket
import stat

import numpy as np
import pytest

from jaxseg.segmenter import transport as tp
from jaxseg.segmenter.interface import MaskRequest, MaskResult, ObjectPrompt, VideoHandle


def test_message_roundtrip_over_a_socket():
    a, b = socket.socketpair()
    with a, b:
        arrays = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "m": np.eye(3, dtype=bool)}
        tp.send_message(a, {"op": "t", "k": [1, 2]}, arrays)
        header, got = tp.recv_message(b)
        assert header == {"op": "t", "k": [1, 2]}
        for k, v in arrays.items():
            assert got[k].dtype == v.dtype and np.array_equal(got[k], v)


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE-GARBAGE-GARBAGE-",
        tp._PREFIX.pack(tp.MAGIC, 5, 0) + b"{nope",
        tp._PREFIX.pack(tp.MAGIC, tp.MAX_HEADER_BYTES + 1, 0),
    ],
)
def test_garbage_is_a_protocol_error(raw):
    a, b = socket.socketpair()
    with a, b:
        a.sendall(raw)
        with pytest.raises(tp.ProtocolError):
            tp.recv_message(b)


def test_array_past_payload_is_rejected():
    a, b = socket.socketpair()
    with a, b:
        import json

        hb = json.dumps(
            {"arrays": [{"name": "x", "dtype": "float32", "shape": [100], "offset": 0}]}
        ).encode()
        a.sendall(tp._PREFIX.pack(tp.MAGIC, len(hb), 4) + hb + b"\0\0\0\0")
        with pytest.raises(tp.ProtocolError, match="past the payload"):
            tp.recv_message(b)


def test_requests_and_results_roundtrip():
    v = VideoHandle("abc", 3, 8, 10)
    reqs = [
        MaskRequest(
            v,
            1,
            (
                ObjectPrompt(4, box=(1.5, 2.0, 7.0, 6.0)),
                ObjectPrompt(
                    9, points=np.array([[3.0, 4.0], [5, 6]]), point_labels=np.array([1, 0])
                ),
                ObjectPrompt(2, mask=np.eye(8, 10, dtype=bool)),
            ),
            "backward",
        )
    ]
    wire, arrays = tp.requests_to_wire(reqs)
    (back,) = tp.requests_from_wire(wire, arrays)
    assert back.video == v and back.keyframe == 1 and back.direction == "backward"
    assert back.prompts[0].box == (1.5, 2.0, 7.0, 6.0)
    assert np.array_equal(back.prompts[1].points, [[3, 4], [5, 6]])
    assert np.array_equal(back.prompts[1].point_labels, [1, 0])
    assert np.array_equal(back.prompts[2].mask, np.eye(8, 10, dtype=bool))

    rng = np.random.default_rng(0)
    res = [MaskResult((4, 9), rng.random((2, 3, 8, 10)) > 0.5, np.array([1, 1, 0], bool), "x")]
    meta, arrays = tp.results_to_wire(res)
    (got,) = tp.results_from_wire(meta, arrays)
    assert got.obj_ids == (4, 9) and got.backend == "x"
    assert np.array_equal(got.object_masks, res[0].object_masks)
    assert np.array_equal(got.covered, res[0].covered)
    assert arrays["0.masks"].nbytes == 2 * 3 * 8 * 10 // 8  # bit-packed


def test_bad_wire_request_names_the_field():
    from jaxseg.segmenter.interface import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=r"requests\[0\]: missing field 'prompts'"):
        tp.requests_from_wire([{"video": {"video_id": "a", "shape": [1, 2, 2]}, "keyframe": 0}], {})
    with pytest.raises(InvalidRequestError, match=r"requests\[0\].keyframe"):
        tp.requests_from_wire(
            [{"video": {"video_id": "a", "shape": [1, 2, 2]}, "keyframe": "0", "prompts": []}], {}
        )


def test_shared_frames_roundtrip_and_client_keeps_ownership():
    frames = np.random.default_rng(0).integers(0, 255, (2, 5, 6, 3), dtype=np.uint8)
    shm = tp.SharedFrames(frames, "vid")
    try:
        assert np.array_equal(tp.read_shared_frames(shm.name, frames.shape), frames)
        assert np.array_equal(tp.read_shared_frames(shm.name, frames.shape), frames)  # still there
    finally:
        shm.close()
    with pytest.raises(FileNotFoundError):
        tp.read_shared_frames(shm.name, frames.shape)


def test_socket_is_private():
    d = tp.make_private_socket_dir()
    path = os.path.join(d, "s.sock")
    s = tp.bind_private_socket(path)
    try:
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        s.close()
        os.unlink(path)
        os.rmdir(d)
