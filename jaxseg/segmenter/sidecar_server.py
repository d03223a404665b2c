"""The segmenter sidecar's server: a mask backend in its own process
(`python -m jaxseg.segmenter.sidecar_server`, started by `jaxseg.segmenter.sidecar.SidecarClient`).

`main`:
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

Limits (server): a message's payload is allocated only after its header, and must be exactly
what the header's arrays need; a message must arrive whole within `read_timeout_s` once it
started; at most `max_connections` connections are served (others get an error reply).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from jaxseg.segmenter import transport as tp
from jaxseg.segmenter.interface import (
    InvalidRequestError,
    MaskRequest,
    MaskResult,
    RequestTimeoutError,
    SegmenterError,
    UnknownVideoError,
    validate_request,
)

log = logging.getLogger(__name__)

SERVER_BACKENDS = ("sam2", "classical")


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
    ap = argparse.ArgumentParser(prog="python -m jaxseg.segmenter.sidecar_server")
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


if __name__ == "__main__":
    sys.exit(main())
