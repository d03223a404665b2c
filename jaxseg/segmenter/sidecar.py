"""The segmenter sidecar: a mask backend in its own process, and the client the JAX side uses.

Why a separate process: JAX and PyTorch should not share one (thread pools, device memory,
sam2's import-time hydra initialisation), so SAM2 runs as `python -m jaxseg.segmenter.sidecar`
and the JAX process talks to it over a private Unix socket (see transport.py).

Server (this module's `main`):
- one reader thread per connection; `ping` is answered by the reader (so a health check works
  while a long propagation runs), everything else goes to a single worker thread (the model is
  not thread-safe);
- batching: the worker drains every segment job that is queued (up to `max_batch` requests,
  optionally waiting `batch_window_s` for more) and runs them as one backend call, so requests
  on the same video share the image encoder (Sam2Backend groups them); if the merged call fails,
  each job is re-run alone so an error reaches only the job that caused it;
- per-request timeout: the job's deadline is passed to the backend, which gives up between
  frames and replies RequestTimeoutError;
- besides `segment`, the worker answers `features` (frozen image-encoder output of chosen
  frames, see transport.ImageFeatures) and `decoder_weights` (the SAM2 prompt encoder + mask
  decoder tensors) for the JAX mask decoder (jaxseg.models.sam2); sam2 backend only;
- no orphans: the client passes the read end of a pipe whose write end only it holds; EOF on it
  means the parent is gone (however it died) and the sidecar exits. getppid() is polled as a
  second guard. (prctl(PR_SET_PDEATHSIG) is not used: it fires when the *thread* that forked
  the child exits, and the client may restart the sidecar from a short-lived callback thread.)

Client (`SidecarClient`, a MaskBackend): spawns the server, writes each clip once into shared
memory, and retries: if the sidecar dies (EOF / reset / broken pipe / garbage on the stream /
not running) or a restart itself fails (crash during start-up, connection refused), it is
restarted after a backoff (`restart_backoff_s`, doubling), the clips are re-registered from
shared memory and the in-flight request is sent again, up to `max_restarts` times per call,
logging a warning each time; after that the call raises SidecarError. Every transport failure
reaches the caller as a SegmenterError. Nothing is dropped silently.

Limits (server): a message's payload is allocated only after its header, and must be exactly
what the header's arrays need; a message must arrive whole within `read_timeout_s` once it
started; at most `max_connections` connections are served (others get an error reply).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import queue
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

log = logging.getLogger(__name__)

SERVER_BACKENDS = ("sam2", "classical")


class SidecarError(SegmenterError):
    """The sidecar could not be started or kept alive, or replied with an unexpected error."""


_ERRORS: dict[str, type[Exception]] = {
    "InvalidRequestError": InvalidRequestError,
    "UnknownVideoError": UnknownVideoError,
    "RequestTimeoutError": RequestTimeoutError,
}


# =============================================================================== server


def _build_backend(name: str, config: dict[str, Any]):
    if name == "sam2":
        from jaxseg.segmenter.sam2_backend import Sam2Backend, Sam2Config

        return Sam2Backend(Sam2Config(**config))
    if name == "classical":
        from jaxseg.segmenter.classical import ClassicalBackend, ClassicalConfig

        return ClassicalBackend(ClassicalConfig(**config))
    raise InvalidRequestError(f"sidecar.backend: {name!r} is not one of {SERVER_BACKENDS}")


def _error_reply(msg_id: Any, exc: BaseException) -> dict[str, Any]:
    kind = type(exc).__name__
    text = exc.video_id if isinstance(exc, UnknownVideoError) else str(exc)
    return {"id": msg_id, "ok": False, "error": {"type": kind, "message": text}}


@dataclass
class _Job:
    conn: _Conn
    header: dict[str, Any]
    arrays: tp.Arrays
    received: float


class _Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.lock = threading.Lock()

    def reply(self, header: dict[str, Any], arrays: tp.Arrays | None = None) -> None:
        try:
            with self.lock:
                tp.send_message(self.sock, header, arrays)
        except OSError:
            pass  # the client went away; it will retry on a new connection


class SidecarServer:
    def __init__(
        self,
        backend,
        max_batch: int = 64,
        batch_window_s: float = 0.0,
        *,
        max_connections: int = 16,
        read_timeout_s: float = 60.0,
    ):
        self.backend = backend
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.read_timeout_s = read_timeout_s  # a message must arrive whole within this
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.started = time.monotonic()
        self.busy = False
        self.served = 0
        self.batches = 0

    # ---- connection side
    def health(self) -> dict[str, Any]:
        return {
            "ok": True,
            "pid": os.getpid(),
            "backend": self.backend.name,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "queued": self.jobs.qsize(),
            "busy": self.busy,
            "served_requests": self.served,
            "batches": self.batches,
            "torchvision_loaded": "torchvision" in sys.modules,
        }

    def accept(self, sock: socket.socket) -> None:
        """Serves `sock` on its own thread, or refuses it (an error reply, then close) when
        `max_connections` are open already."""
        if not self._slots.acquire(blocking=False):
            with sock:
                sock.settimeout(5.0)
                _Conn(sock).reply(
                    _error_reply(
                        None,
                        SegmenterError(
                            f"sidecar: {self.max_connections} connections open; refused"
                        ),
                    )
                )
            return

        def run() -> None:
            try:
                self.serve_connection(sock)
            finally:
                self._slots.release()

        threading.Thread(target=run, daemon=True).start()

    def serve_connection(self, sock: socket.socket) -> None:
        conn = _Conn(sock)
        with sock:
            while True:
                try:
                    header, arrays = tp.recv_message(sock, read_timeout=self.read_timeout_s)
                except tp.ProtocolError as e:
                    conn.reply(_error_reply(None, e))
                    return  # framing is lost: drop the connection
                except (EOFError, ConnectionError, OSError):
                    return  # closed, reset, or stalled mid-message past read_timeout_s
                except Exception as e:  # noqa: BLE001 - never a silent thread death
                    conn.reply(_error_reply(None, tp.ProtocolError(f"unreadable message: {e!r}")))
                    return
                op, msg_id = header.get("op"), header.get("id")
                if op == "ping":
                    conn.reply({"id": msg_id, **self.health()})
                elif op in ("segment", "register", "features", "decoder_weights"):
                    self.jobs.put(_Job(conn, header, arrays, time.monotonic()))
                elif op == "shutdown":
                    conn.reply({"id": msg_id, "ok": True})
                    os._exit(0)
                else:
                    conn.reply(_error_reply(msg_id, InvalidRequestError(f"op: unknown {op!r}")))

    # ---- worker side
    def work_forever(self) -> None:
        while True:
            jobs = [self.jobs.get()]
            self.busy = True
            try:
                until = time.monotonic() + self.batch_window_s
                while sum(self._n_requests(j) for j in jobs) < self.max_batch:
                    try:
                        wait = until - time.monotonic()
                        jobs.append(
                            self.jobs.get(timeout=wait) if wait > 0 else self.jobs.get_nowait()
                        )
                    except queue.Empty:
                        break
                segs = []
                for job in jobs:
                    op = job.header.get("op")
                    if op == "register":
                        self._register(job)
                    elif op in ("features", "decoder_weights"):
                        self._sam2_extra(job)
                    else:
                        segs.append(job)
                if segs:
                    self._segment(segs)
            finally:
                self.busy = False

    @staticmethod
    def _n_requests(job: _Job) -> int:
        reqs = job.header.get("requests")
        return len(reqs) if isinstance(reqs, list) else 1

    def _register(self, job: _Job) -> None:
        h, msg_id = job.header, job.header.get("id")
        try:
            shape = tuple(int(s) for s in h["shape"])
            frames = tp.read_shared_frames(str(h["shm"]), shape)
            handle = self.backend.register_video(frames, str(h["video_id"]))
            job.conn.reply({"id": msg_id, "ok": True, "video": tp.handle_to_wire(handle)})
        except (KeyError, TypeError, ValueError, FileNotFoundError) as e:
            job.conn.reply(_error_reply(msg_id, InvalidRequestError(f"register: {e!r}")))
        except Exception as e:  # noqa: BLE001 - reported to the client, sidecar stays up
            job.conn.reply(_error_reply(msg_id, e))

    def _sam2_extra(self, job: _Job) -> None:
        """`features` / `decoder_weights`: calls that only a backend with a SAM2 model answers."""
        h, msg_id = job.header, job.header.get("id")
        op = h.get("op")
        try:
            if not hasattr(self.backend, "image_features"):
                raise InvalidRequestError(
                    f"{op}: backend {self.backend.name!r} has no SAM2 image encoder / decoder"
                )
            if op == "features":
                handle = tp.handle_from_wire(h.get("video") or {}, "features")
                feats = self.backend.image_features(handle, h.get("frames"))
                arrays = tp.features_to_wire(feats)
            else:
                arrays = self.backend.decoder_state_dict()
            self.served += 1
            job.conn.reply({"id": msg_id, "ok": True}, arrays)
        except Exception as e:  # noqa: BLE001 - reported to the client, sidecar stays up
            job.conn.reply(_error_reply(msg_id, e))

    def _segment(self, jobs: list[_Job]) -> None:
        parsed: list[tuple[_Job, list[MaskRequest], float | None]] = []
        for job in jobs:
            try:
                reqs = tp.requests_from_wire(job.header.get("requests"), job.arrays)
                for i, r in enumerate(reqs):
                    validate_request(r, f"requests[{i}]")
                t = job.header.get("timeout_s")
                deadline = None if t is None else job.received + float(t)
                parsed.append((job, reqs, deadline))
            except Exception as e:  # noqa: BLE001
                job.conn.reply(_error_reply(job.header.get("id"), e))
        if not parsed:
            return
        deadlines = [d for _, _, d in parsed]
        deadline = None if None in deadlines else max(deadlines)
        try:
            merged = [r for _, reqs, _ in parsed for r in reqs]
            t0 = time.perf_counter()
            results = self.backend.segment(merged, deadline=deadline)
            compute_s = time.perf_counter() - t0
            self.batches += 1
        except Exception as e:  # noqa: BLE001 - reported to the client, sidecar stays up
            if len(parsed) == 1 or isinstance(e, RequestTimeoutError):
                for job, _, _ in parsed:
                    job.conn.reply(_error_reply(job.header.get("id"), e))
                return
            for job, reqs, d in parsed:  # attribute the error to the job that caused it
                self._segment_one(job, reqs, d)
            return
        start = 0
        for job, reqs, _ in parsed:
            self._reply_results(job, results[start : start + len(reqs)], compute_s)
            start += len(reqs)

    def _segment_one(self, job: _Job, reqs: list[MaskRequest], deadline: float | None) -> None:
        try:
            t0 = time.perf_counter()
            results = self.backend.segment(reqs, deadline=deadline)
            compute_s = time.perf_counter() - t0
            self.batches += 1
        except Exception as e:  # noqa: BLE001
            job.conn.reply(_error_reply(job.header.get("id"), e))
            return
        self._reply_results(job, results, compute_s)

    def _reply_results(self, job: _Job, results: list[MaskResult], compute_s: float) -> None:
        """compute_s: seconds the backend spent on the batch this job was part of."""
        meta, arrays = tp.results_to_wire(results)
        self.served += len(results)
        header = {"id": job.header.get("id"), "ok": True, "results": meta, "compute_s": compute_s}
        job.conn.reply(header, arrays)


def _watch_parent(parent_pid: int, parent_fd: int | None, cleanup: list[str]) -> None:
    """Exit when the parent is gone: EOF on the parent's pipe, or reparenting."""

    def die() -> None:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
        os._exit(0)

    if parent_fd is not None:

        def on_pipe() -> None:
            try:
                while os.read(parent_fd, 1):
                    pass
            except OSError:
                pass
            die()

        threading.Thread(target=on_pipe, daemon=True, name="parent-pipe").start()

    def on_poll() -> None:
        while True:
            if os.getppid() != parent_pid:
                die()
            time.sleep(0.5)

    threading.Thread(target=on_poll, daemon=True, name="parent-poll").start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jaxseg.segmenter.sidecar")
    ap.add_argument("--socket", required=True, help="Unix socket path to listen on")
    ap.add_argument("--backend", default="sam2", choices=SERVER_BACKENDS)
    ap.add_argument("--config", default="{}", help="backend config as JSON")
    ap.add_argument("--parent-pid", type=int, default=None)
    ap.add_argument("--parent-fd", type=int, default=None)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--batch-window-s", type=float, default=0.0)
    ap.add_argument("--owned-dir", default=None, help="removed when the parent dies")
    ap.add_argument("--max-connections", type=int, default=16)
    ap.add_argument("--read-timeout-s", type=float, default=60.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[sidecar %(process)d] %(message)s")
    if args.parent_pid is not None:
        _watch_parent(args.parent_pid, args.parent_fd, [args.owned_dir] if args.owned_dir else [])
    backend = _build_backend(args.backend, json.loads(args.config))
    server = SidecarServer(
        backend,
        args.max_batch,
        args.batch_window_s,
        max_connections=args.max_connections,
        read_timeout_s=args.read_timeout_s,
    )
    threading.Thread(target=server.work_forever, daemon=True, name="worker").start()
    tmp = args.socket + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    lsock = tp.bind_private_socket(tmp)
    lsock.listen(64)
    os.replace(tmp, args.socket)  # the socket appears only once the backend is ready
    log.info("ready: backend=%s socket=%s", backend.name, args.socket)
    while True:
        sock, _ = lsock.accept()
        server.accept(sock)


# =============================================================================== client


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
            cfg.python, "-m", "jaxseg.segmenter.sidecar",
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


if __name__ == "__main__":
    sys.exit(main())
