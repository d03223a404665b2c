"""The segmenter sidecar's client: the JAX side of a mask backend that runs in its own process.

Why a separate process: JAX and PyTorch should not share one (thread pools, device memory,
sam2's import-time hydra initialisation), so SAM2 runs as
`python -m jaxseg.segmenter.sidecar_server` and the JAX process talks to it over a private Unix
socket (see transport.py).

Client (`SidecarClient`, a MaskBackend): spawns the server, writes each clip once into shared
memory, and retries: if the sidecar dies (EOF / reset / broken pipe / garbage on the stream /
not running) or a restart itself fails (crash during start-up, connection refused), it is
restarted after a backoff (`restart_backoff_s`, doubling), the clips are re-registered from
shared memory and the in-flight request is sent again, up to `max_restarts` times per call,
logging a warning each time; after that the call raises SidecarError. Every transport failure
reaches the caller as a SegmenterError. Nothing is dropped silently.

The server (batching, per-request timeouts, no orphans, message limits):
jaxseg/segmenter/sidecar_server.py.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxseg.segmenter import transport as tp
from jaxseg.segmenter.interface import (
    InvalidRequestError,
    MaskRequest,
    MaskResult,
    RequestTimeoutError,
    SegmenterError,
    UnknownVideoError,
    VideoHandle,
    handle_for,
    validate_request,
)
from jaxseg.segmenter.sidecar_server import SERVER_BACKENDS

log = logging.getLogger(__name__)


class SidecarError(SegmenterError):
    """The sidecar could not be started or kept alive, or replied with an unexpected error."""


_ERRORS: dict[str, type[Exception]] = {
    "InvalidRequestError": InvalidRequestError,
    "UnknownVideoError": UnknownVideoError,
    "RequestTimeoutError": RequestTimeoutError,
}


@dataclass
class SidecarConfig:
    """backend: what the sidecar runs ("sam2", or "classical" for torch-free tests).
    backend_config: that backend's config fields (e.g. Sam2Config: model, checkpoint, device)."""

    backend: str = "sam2"
    backend_config: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 600.0
    start_timeout_s: float = 180.0
    max_restarts: int = 3
    restart_backoff_s: float = 0.2  # doubled per consecutive failed try, capped at 5 s
    max_batch: int = 64
    max_connections: int = 16
    read_timeout_s: float = 60.0
    batch_window_s: float = 0.0
    max_videos: int = 32
    python: str = sys.executable


def ping(socket_path: str, timeout: float = 5.0) -> dict[str, Any]:
    """Health check over a fresh connection (works while the worker is busy)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(socket_path)
        tp.send_message(s, {"op": "ping", "id": 0})
        header, _ = tp.recv_message(s)
        return header


class _Dead(Exception):
    """The sidecar connection broke or the process is gone: restart and retry."""


class _StartFailed(SidecarError):
    """A (re)start of the sidecar process failed: retried like a crash."""


def _cleanup(state: dict[str, Any]) -> None:
    proc = state.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    for shm in state.get("shm", {}).values():
        shm.close()
    if state.get("dir"):
        shutil.rmtree(state["dir"], ignore_errors=True)


class SidecarClient:
    """MaskBackend that forwards to a sidecar process (started on first use). Thread-safe:
    calls are serialised on one connection; pass many requests per `segment` call to batch."""

    def __init__(self, config: SidecarConfig | None = None):
        self.config = config or SidecarConfig()
        if self.config.backend not in SERVER_BACKENDS:
            raise InvalidRequestError(
                f"sidecar.backend: {self.config.backend!r} is not one of {SERVER_BACKENDS}"
            )
        self.name = self.config.backend
        self.restarts = 0
        self.last_compute_s = float("nan")  # backend time of the last segment call's batch
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._parent_w: int | None = None
        self._dir = tp.make_private_socket_dir()
        self.socket_path = os.path.join(self._dir, "sidecar.sock")
        self.log_path = os.path.join(self._dir, "sidecar.log")
        self._shm: OrderedDict[str, tp.SharedFrames] = OrderedDict()
        self._on_server: set[str] = set()
        # Shared with the finaliser so an exiting interpreter kills the child and frees shm.
        self._state = {"proc": None, "shm": self._shm, "dir": self._dir}
        self._finalizer = weakref.finalize(self, _cleanup, self._state)  # also runs at exit

    # ---- process management
    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> SidecarClient:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start_with_retries("start")
        return self

    def _start_with_retries(self, why: str) -> None:
        """Spawns the sidecar, retrying a failed start (with backoff) up to `max_restarts`
        times; SidecarError naming every failure after that."""
        failures = []
        for attempt in range(self.config.max_restarts + 1):
            if attempt:
                time.sleep(min(self.config.restart_backoff_s * 2 ** (attempt - 1), 5.0))
            try:
                self._spawn()
                return
            except (_StartFailed, OSError) as e:
                failures.append(f"try {attempt + 1}: {e}")
                log.warning("segmenter sidecar %s failed (%s)", why, e)
        raise SidecarError(
            f"sidecar {why} failed {len(failures)} times; giving up:\n" + "\n".join(failures)
        )

    def _spawn(self) -> None:
        self._stop_process()
        cfg = self.config
        r, w = os.pipe()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        cmd = [
            cfg.python, "-m", "jaxseg.segmenter.sidecar_server",
            "--socket", self.socket_path,
            "--backend", cfg.backend,
            "--config", json.dumps(cfg.backend_config),
            "--parent-pid", str(os.getpid()),
            "--parent-fd", str(r),
            "--max-batch", str(cfg.max_batch),
            "--batch-window-s", str(cfg.batch_window_s),
            "--owned-dir", self._dir,
            "--max-connections", str(cfg.max_connections),
            "--read-timeout-s", str(cfg.read_timeout_s),
        ]  # fmt: skip
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(
                cmd, pass_fds=(r,), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env
            )
        os.close(r)
        self._parent_w = w
        self._state["proc"] = self._proc
        self._on_server.clear()
        deadline = time.monotonic() + cfg.start_timeout_s
        while not os.path.exists(self.socket_path):
            if self._proc.poll() is not None:
                raise _StartFailed(
                    f"sidecar exited with code {self._proc.returncode} during start-up; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self._stop_process()
                raise _StartFailed(f"sidecar not ready after {cfg.start_timeout_s} s")
            time.sleep(0.02)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(self.socket_path)
        except OSError as e:  # refused / vanished: the new process died right after start
            raise _StartFailed(
                f"sidecar socket {self.socket_path} refused the connection ({e!r}); "
                f"log {self.log_path}:\n{self._log_tail()}"
            ) from e

    def _log_tail(self, n: int = 4000) -> str:
        try:
            return Path(self.log_path).read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def _stop_process(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._parent_w is not None:
            # Closed only after the child is gone: on EOF a live sidecar would remove our dir.
            os.close(self._parent_w)
            self._parent_w = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def _restart(self, why: str) -> None:
        code = None if self._proc is None else self._proc.poll()
        self.restarts += 1
        log.warning("segmenter sidecar lost (%s, exit code %s); restarting", why, code)
        self._spawn()  # failures are retried by the caller (_call), never escape raw

    # ---- messaging
    def _roundtrip(self, header: dict[str, Any], arrays: tp.Arrays | None, timeout: float):
        if self._sock is None or self._proc is None or self._proc.poll() is not None:
            raise _Dead("sidecar not running")
        header = {**header, "id": next(self._ids)}
        try:
            self._sock.settimeout(timeout)
            tp.send_message(self._sock, header, arrays)
            reply, out = tp.recv_message(self._sock)
        except TimeoutError:
            raise
        except (EOFError, ConnectionError, OSError, tp.ProtocolError) as e:
            raise _Dead(repr(e)) from e  # garbage on the stream: framing is lost too
        if reply.get("id") != header["id"]:
            raise _Dead(f"reply id {reply.get('id')} != request id {header['id']}")
        return reply, out

    def _call(
        self,
        header: dict[str, Any],
        arrays: tp.Arrays | None = None,
        videos: Sequence[str] = (),
        timeout: float | None = None,
    ):
        """Send with restart-and-retry; raise the sidecar's error for a failed request."""
        timeout = self.config.timeout_s if timeout is None else timeout
        hard = timeout * 1.1 + 10.0
        tries = 0
        lost: str | None = None  # why the sidecar must be (re)started before the next try
        with self._lock:
            while True:
                try:
                    if lost is not None:
                        # backoff grows with each consecutive failure (a crash loop must not spin)
                        time.sleep(min(self.config.restart_backoff_s * 2 ** (tries - 1), 5.0))
                        self._restart(lost)
                        lost = None
                    elif self._proc is None:
                        self._spawn()
                    for vid in videos:
                        if vid not in self._on_server:
                            self._register_on_server(vid, hard)
                    reply, out = self._roundtrip({**header, "timeout_s": timeout}, arrays, hard)
                except (_Dead, _StartFailed, OSError) as e:
                    # _Dead: the connection broke; _StartFailed/OSError: a (re)start failed
                    tries += 1
                    if tries > self.config.max_restarts:
                        raise SidecarError(
                            f"sidecar died {tries} times; giving up. Last: {e}. "
                            f"Log {self.log_path}:\n{self._log_tail()}"
                        ) from e
                    lost = str(e)
                    continue
                except TimeoutError as e:
                    try:
                        self._restart(f"no reply within {hard:.0f} s")
                    except (_StartFailed, OSError) as err:
                        log.warning("restart after a timeout failed (%s); retried next call", err)
                        self._stop_process()
                    raise RequestTimeoutError(
                        f"sidecar gave no reply within {hard:.0f} s; it was restarted"
                    ) from e
                if reply.get("ok"):
                    return reply, out
                err = reply.get("error") or {}
                if err.get("type") == "UnknownVideoError" and err.get("message") in videos:
                    # The sidecar evicted the clip: send it again from shared memory.
                    self._on_server.discard(err["message"])
                    tries += 1
                    if tries <= self.config.max_restarts:
                        continue
                exc = _ERRORS.get(err.get("type"), SidecarError)
                raise exc(err.get("message", "sidecar error"))

    def _register_on_server(self, video_id: str, timeout: float) -> None:
        shm = self._shm.get(video_id)
        if shm is None:
            raise UnknownVideoError(video_id)
        header = {"op": "register", "video_id": video_id, "shape": list(shm.shape), "shm": shm.name}
        reply, _ = self._roundtrip(header, None, timeout)
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise _ERRORS.get(err.get("type"), SidecarError)(err.get("message"))
        self._on_server.add(video_id)

    # ---- MaskBackend
    def register_video(self, frames: np.ndarray, video_id: str | None = None) -> VideoHandle:
        handle = handle_for(frames, video_id)
        with self._lock:
            if handle.video_id not in self._shm:
                try:
                    self._shm[handle.video_id] = tp.SharedFrames(frames, handle.video_id)
                except OSError as e:  # /dev/shm full or unavailable
                    raise SidecarError(
                        f"sidecar: cannot put clip {handle.video_id!r} ({frames.nbytes} B) "
                        f"into shared memory: {e!r}"
                    ) from e
                while len(self._shm) > self.config.max_videos:
                    vid, old = self._shm.popitem(last=False)
                    old.close()
                    self._on_server.discard(vid)
            self._shm.move_to_end(handle.video_id)
            self._call({"op": "ping"}, videos=[handle.video_id])
        return handle

    def segment(
        self, requests: Sequence[MaskRequest], timeout: float | None = None
    ) -> list[MaskResult]:
        requests = list(requests)
        for i, r in enumerate(requests):
            validate_request(r, f"requests[{i}]")
            if r.video.video_id not in self._shm:
                raise UnknownVideoError(r.video.video_id)
        if not requests:
            return []
        wire, arrays = tp.requests_to_wire(requests)
        videos = list(dict.fromkeys(r.video.video_id for r in requests))
        reply, out = self._call({"op": "segment", "requests": wire}, arrays, videos, timeout)
        self.last_compute_s = float(reply.get("compute_s", float("nan")))
        return tp.results_from_wire(reply["results"], out)

    def image_features(
        self, handle: VideoHandle, frames: Sequence[int], timeout: float | None = None
    ) -> tp.ImageFeatures:
        """SAM2 image-encoder features of `frames` of a registered clip, memory-free (what
        `_forward_sam_heads` takes on a frame without memory; see transport.ImageFeatures).
        Cached per (video, frame) in the sidecar. sam2 backend only."""
        if not isinstance(handle, VideoHandle):
            raise InvalidRequestError(
                f"features.video: expected VideoHandle, got {type(handle).__name__}"
            )
        if handle.video_id not in self._shm:
            raise UnknownVideoError(handle.video_id)
        frames = tp.check_frame_indices(frames, handle.num_frames)
        header = {"op": "features", "video": tp.handle_to_wire(handle), "frames": frames}
        _, out = self._call(header, None, [handle.video_id], timeout)
        return tp.features_from_wire(out)

    def decoder_state_dict(self, timeout: float | None = None) -> dict[str, np.ndarray]:
        """The sidecar model's `sam_prompt_encoder.*` / `sam_mask_decoder.*` tensors (float32,
        torch layouts): `jaxseg.models.sam2.load_torch_weights(module, this)` gives the JAX
        decoder exactly the sidecar's weights (e.g. the random tiny model's)."""
        _, out = self._call({"op": "decoder_weights"}, None, (), timeout)
        return {k: np.array(v) for k, v in out.items()}

    def health(self) -> dict[str, Any]:
        reply, _ = self._call({"op": "ping"})
        return reply

    def close(self) -> None:
        with self._lock:
            if self._sock is not None and self._proc is not None and self._proc.poll() is None:
                try:
                    self._roundtrip({"op": "shutdown"}, None, 5.0)
                except (_Dead, TimeoutError):
                    pass
            self._stop_process()
            self._finalizer()

    def __enter__(self) -> SidecarClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)
