"""Sidecar faults, on the torch-free classical backend: a crash while
restarting is retried with backoff, a refused connection is a SegmenterError, payloads are
bounded by the header's arrays, an Infinity shape gets a reply, a stalled peer times out,
connections are capped."""

import json
import os
import signal
import socket
import stat
import struct
import threading
import time

import numpy as np
import pytest

from jaxseg.segmenter import transport as tp
from jaxseg.segmenter.interface import MaskRequest, ObjectPrompt, SegmenterError
from jaxseg.segmenter.sidecar import SidecarClient, SidecarConfig, SidecarError
from jaxseg.segmenter.sidecar_server import SidecarServer


def _clip(t=4, h=32, w=40):
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, 8:16, 4 + 2 * i : 12 + 2 * i] = (230, 40, 40)
    return frames


def _request(handle):
    return MaskRequest(handle, 0, (ObjectPrompt(1, box=(4.0, 8.0, 12.0, 16.0)),), "both")


def _flaky_python(tmp_path, fail_starts: list[str]):
    """An interpreter wrapper: start k does what fail_starts[k] says ('crash': exit 3 at
    once; 'refuse': put a plain file where the socket goes, then hang; 'ok': the sidecar)."""
    counter = tmp_path / "starts"
    counter.write_text("0")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(fail_starts))
    script = tmp_path / "python"
    script.write_text(
        f"""#!{os.sys.executable}
import json, os, sys, time
n = int(open({str(counter)!r}).read())
open({str(counter)!r}, "w").write(str(n + 1))
plan = json.load(open({str(plan)!r}))
what = plan[n] if n < len(plan) else "ok"
if what == "crash":
    sys.exit(3)
if what == "refuse":
    sock = sys.argv[sys.argv.index("--socket") + 1]
    open(sock, "w").close()
    time.sleep(60)
os.execv({os.sys.executable!r}, [{os.sys.executable!r}, *sys.argv[1:]])
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), counter


def test_crash_during_restart_is_retried(tmp_path):
    python, counter = _flaky_python(tmp_path, ["ok", "crash", "refuse"])
    cfg = SidecarConfig(backend="classical", python=python, max_restarts=4, restart_backoff_s=0.01)
    with SidecarClient(cfg) as client:
        handle = client.register_video(_clip(), "v")
        first = client.segment([_request(handle)])
        os.kill(client.pid, signal.SIGKILL)  # the next restarts: a crash, a refused socket
        again = client.segment([_request(handle)])
        np.testing.assert_array_equal(first[0].object_masks, again[0].object_masks)
        assert client.restarts == 3 and counter.read_text() == "4"


def test_restart_failures_end_in_one_segmenter_error(tmp_path):
    python, _ = _flaky_python(tmp_path, ["ok", "refuse", "crash", "refuse"])
    cfg = SidecarConfig(backend="classical", python=python, max_restarts=2, restart_backoff_s=0.01)
    with SidecarClient(cfg) as client:
        handle = client.register_video(_clip(), "v")
        os.kill(client.pid, signal.SIGKILL)
        with pytest.raises(SidecarError, match="giving up") as err:
            client.segment([_request(handle)])
        assert isinstance(err.value, SegmenterError)


def test_start_failures_are_retried_then_named(tmp_path):
    python, _ = _flaky_python(tmp_path, ["crash", "crash", "crash"])
    cfg = SidecarConfig(backend="classical", python=python, max_restarts=2, restart_backoff_s=0.01)
    client = SidecarClient(cfg)
    with pytest.raises(SidecarError, match=r"(?s)start failed 3 times.*exited with code 3"):
        client.start()
    client.close()
    python, _ = _flaky_python(tmp_path, ["crash", "refuse"])
    with SidecarClient(
        SidecarConfig(backend="classical", python=python, restart_backoff_s=0.01)
    ) as client:
        assert client.health()["backend"] == "classical"


# ------------------------------------------------------------------ server limits, in process


class _Backend:
    name = "fake"


@pytest.fixture
def server(tmp_path):
    srv = SidecarServer(_Backend(), max_connections=2, read_timeout_s=0.5)
    path = str(tmp_path / "s.sock")
    lsock = tp.bind_private_socket(path)
    lsock.listen(8)

    def loop():
        while True:
            try:
                sock, _ = lsock.accept()
            except OSError:
                return
            srv.accept(sock)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield path
    lsock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone does not
    lsock.close()
    thread.join(timeout=5)


def _connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5.0)
    s.connect(path)
    return s


def _raw(header: bytes, payload_len: int) -> bytes:
    return struct.pack("!4sIQ", tp.MAGIC, len(header), payload_len) + header


def test_claimed_payload_is_bounded_by_the_arrays(server):
    with _connect(server) as s:
        s.sendall(_raw(b'{"op":"segment","id":1,"arrays":[]}', 8 << 30))  # then nothing
        t0 = time.monotonic()
        reply, _ = tp.recv_message(s)
        assert time.monotonic() - t0 < 2.0  # answered at once, nothing allocated or awaited
        assert reply["error"]["type"] == "ProtocolError"
        assert (
            "payload is 8589934592 B but the header's arrays need 0 B" in reply["error"]["message"]
        )


@pytest.mark.parametrize(
    "desc, says",
    [
        (b'{"name":"x","dtype":"uint8","shape":[Infinity],"offset":0}', "not a JSON number"),
        (b'{"name":"x","dtype":"uint8","shape":[2.5],"offset":0}', "not non-negative ints"),
        (b'{"name":"x","dtype":"uint8","shape":[-1],"offset":0}', "not non-negative ints"),
        (b'{"name":"x","dtype":"uint8","shape":[1e30],"offset":0}', "not non-negative ints"),
        (b'{"name":"x","dtype":"uint8","shape":[99999999999],"offset":0}', "payload limit"),
        (b'{"name":7,"dtype":"uint8","shape":[1],"offset":0}', "is not a string"),
        (b'"x"', "expected an object"),
    ],
)
def test_bad_array_descriptors_get_a_reply(server, desc, says):
    with _connect(server) as s:
        s.sendall(_raw(b'{"op":"segment","id":1,"arrays":[' + desc + b"]}", 1))
        reply, _ = tp.recv_message(s)
        assert reply["ok"] is False and says in reply["error"]["message"]
        assert s.recv(1) == b""  # then the connection is closed (framing lost)
    with _connect(server) as s:  # and the server still serves
        tp.send_message(s, {"op": "ping", "id": 5})
        assert tp.recv_message(s)[0]["id"] == 5


def test_a_stalled_message_times_out_and_frees_its_slot(server):
    with _connect(server) as s:
        s.sendall(_raw(b'{"op":"ping","id":1,"arrays":[]}', 0)[:6])  # half a prefix
        t0 = time.monotonic()
        assert s.recv(1) == b""  # the server dropped it
        assert 0.3 < time.monotonic() - t0 < 3.0
    for _ in range(3):  # slots were released: new connections are served
        with _connect(server) as s:
            tp.send_message(s, {"op": "ping", "id": 2})
            assert tp.recv_message(s)[0]["ok"]


def test_connections_are_capped(server):
    a, b = _connect(server), _connect(server)
    for s in (a, b):
        tp.send_message(s, {"op": "ping", "id": 1})
        assert tp.recv_message(s)[0]["ok"]
    with _connect(server) as c:
        reply, _ = tp.recv_message(c)
        assert reply["ok"] is False and "2 connections open; refused" in reply["error"]["message"]
    a.close()
    b.close()
    time.sleep(0.2)
    with _connect(server) as d:
        tp.send_message(d, {"op": "ping", "id": 3})
        assert tp.recv_message(d)[0]["ok"]
