"""The sidecar client against a real sidecar process running a tiny random-init SAM2."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from jaxseg.segmenter import transport as tp
from jaxseg.segmenter.cache import CachingBackend
from jaxseg.segmenter.interface import (
    InvalidRequestError,
    MaskRequest,
    ObjectPrompt,
    RequestTimeoutError,
)
from jaxseg.segmenter.sidecar import SidecarClient, SidecarConfig, ping


def two_objects(handle, keyframe, direction="both"):
    return MaskRequest(
        handle,
        keyframe,
        (
            ObjectPrompt(3, box=(4.0, 10.0, 20.0, 26.0)),
            ObjectPrompt(8, points=np.array([[58.0, 45.0]]), point_labels=np.array([1])),
        ),
        direction,
    )


def test_shapes_union_and_bidirectional_coverage(sam2_sidecar, moving_squares):
    frames = moving_squares(t=8)
    handle = sam2_sidecar.register_video(frames)
    k = 4
    both, fwd, bwd = sam2_sidecar.segment(
        [
            two_objects(handle, k),
            two_objects(handle, k, "forward"),
            two_objects(handle, k, "backward"),
        ]
    )
    assert both.backend == "sam2" and both.obj_ids == (3, 8)
    assert sam2_sidecar.health()["torchvision_loaded"] is False  # sam2's video path needs none
    assert both.object_masks.shape == (2, 8, 64, 80) and both.object_masks.dtype == bool
    assert np.array_equal(both.union, both.object_masks[0] | both.object_masks[1])
    # covered = frames SAM2 actually yielded: forward then reverse from k reach every frame.
    assert both.covered.all()
    assert fwd.covered.tolist() == [t >= k for t in range(8)]
    assert bwd.covered.tolist() == [t <= k for t in range(8)]
    assert not fwd.object_masks[:, :k].any() and not bwd.object_masks[:, k + 1 :].any()
    # The forward half of "both" is the same computation as "forward" alone.
    assert np.array_equal(both.object_masks[:, k:], fwd.object_masks[:, k:])


def test_batched_requests_equal_one_at_a_time(sam2_sidecar, moving_squares):
    handle = sam2_sidecar.register_video(moving_squares(t=6, seed=1))
    r1 = two_objects(handle, 2)
    r2 = MaskRequest(handle, 2, (ObjectPrompt(1, box=(40.0, 30.0, 75.0, 60.0)),))
    alone = [sam2_sidecar.segment([r])[0] for r in (r1, r2)]
    before = sam2_sidecar.health()["batches"]
    together = sam2_sidecar.segment([r1, r2])
    assert sam2_sidecar.health()["batches"] == before + 1  # one backend call for both
    for a, b in zip(alone, together):
        assert a.obj_ids == b.obj_ids and np.array_equal(a.object_masks, b.object_masks)


def test_cache_hits_skip_the_sidecar(sam2_sidecar, moving_squares):
    cache = CachingBackend(sam2_sidecar)
    handle = cache.register_video(moving_squares(t=5, seed=2))
    first = cache.segment([two_objects(handle, 2)])[0]
    served = sam2_sidecar.health()["served_requests"]
    again = cache.segment([two_objects(handle, 2)])[0]
    assert again is first and cache.stats.hits == 1
    assert sam2_sidecar.health()["served_requests"] == served


def test_kill_9_mid_request_completes_after_restart(sam2_sidecar, moving_squares):
    frames = moving_squares(t=24, seed=3)
    handle = sam2_sidecar.register_video(frames)
    req = MaskRequest(handle, 12, (ObjectPrompt(0, box=(4.0, 10.0, 20.0, 26.0)),))
    reference = sam2_sidecar.segment([req])[0]
    old_pid, restarts = sam2_sidecar.pid, sam2_sidecar.restarts
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(res=sam2_sidecar.segment([req])[0]))
    worker.start()
    deadline = time.monotonic() + 30
    while not ping(sam2_sidecar.socket_path)["busy"]:  # wait until the request is in flight
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.01)
    os.kill(old_pid, signal.SIGKILL)
    worker.join(120)
    assert not worker.is_alive()
    assert sam2_sidecar.restarts == restarts + 1 and sam2_sidecar.pid != old_pid
    # Same seed -> same random weights in the new sidecar -> the same masks.
    assert np.array_equal(box["res"].object_masks, reference.object_masks)


def test_malformed_requests_get_errors_not_hangs(sam2_sidecar, moving_squares):
    pid = sam2_sidecar.pid
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sam2_sidecar.socket_path)
        s.sendall(b"this is not a message at all")
        header, _ = tp.recv_message(s)
        assert header["ok"] is False and header["error"]["type"] == "ProtocolError"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sam2_sidecar.socket_path)
        tp.send_message(s, {"op": "segment", "id": 7, "requests": [{"keyframe": 0}]})
        header, _ = tp.recv_message(s)
        assert header["id"] == 7 and header["error"]["type"] == "InvalidRequestError"
        assert "missing field" in header["error"]["message"]
        tp.send_message(s, {"op": "explode", "id": 8})
        assert "unknown 'explode'" in tp.recv_message(s)[0]["error"]["message"]
    # A semantically bad request through the client: a clear error naming the field.
    handle = sam2_sidecar.register_video(moving_squares(t=3, seed=4))
    bad = MaskRequest(handle, 1, (ObjectPrompt(0, box=(4.0, 10.0, 20.0, 26.0)),))
    object.__setattr__(bad, "keyframe", 9)
    with pytest.raises(InvalidRequestError, match="keyframe"):
        sam2_sidecar.segment([bad])
    assert sam2_sidecar.health()["ok"] and sam2_sidecar.pid == pid  # still the same sidecar


def test_per_request_timeout(sam2_sidecar, moving_squares):
    handle = sam2_sidecar.register_video(moving_squares(t=16, seed=5))
    req = MaskRequest(handle, 0, (ObjectPrompt(0, box=(4.0, 10.0, 20.0, 26.0)),), "forward")
    pid = sam2_sidecar.pid
    with pytest.raises(RequestTimeoutError, match="deadline"):
        sam2_sidecar.segment([req], timeout=0.05)
    assert sam2_sidecar.pid == pid and sam2_sidecar.health()["ok"]  # the sidecar stays up


def test_sidecar_start_failure_is_reported():
    client = SidecarClient(
        SidecarConfig(backend="sam2", backend_config={"model": "l"}, start_timeout_s=60)
    )
    try:
        with pytest.raises(Exception, match="sam2.checkpoint"):
            client.start()
    finally:
        client.close()


PARENT = textwrap.dedent(
    """
    import sys, time
    from jaxseg.segmenter.sidecar import SidecarClient, SidecarConfig
    c = SidecarClient(SidecarConfig(backend="classical")).start()
    print(c.pid, c._dir, flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)  # a normal exit without close(): the finaliser must stop the sidecar
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_parent_exit_leaves_no_orphan(how):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, how], stdout=subprocess.PIPE, text=True
    )
    try:
        line = parent.stdout.readline().split()
        child, sock_dir = int(line[0]), line[1]
        if how == "sigkill":
            assert _alive(child)
            parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
        assert not os.path.exists(sock_dir)
    finally:
        parent.kill()
        parent.wait()
