"""Wire format between the JAX process and the segmenter sidecar.

A message is  MAGIC | u32 header_len | u64 payload_len | header (UTF-8 JSON) | payload,
where the header's "arrays" list describes raw numpy arrays laid out in the payload. No pickle:
a peer cannot make the other side execute code, and a malformed message is a ProtocolError that
is answered with an error reply instead of a hang. Frames do not travel in messages at all: the
client writes each clip once into `multiprocessing.shared_memory` and sends its name
(see `SharedFrames`); masks come back bit-packed in the payload (1 bit per pixel).

The socket lives in a fresh 0700 directory and is itself chmod 0600 (created under umask 0177),
so only the owning user can talk to the sidecar.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
from multiprocessing import resource_tracker, shared_memory
from typing import Any, NamedTuple

import numpy as np

from jaxseg.segmenter.interface import (
    InvalidRequestError,
    MaskRequest,
    MaskResult,
    ObjectPrompt,
    VideoHandle,
)

MAGIC = b"JXS1"
_PREFIX = struct.Struct("!4sIQ")
MAX_HEADER_BYTES = 16 << 20
MAX_PAYLOAD_BYTES = 8 << 30
_DTYPES = {"bool", "uint8", "int32", "int64", "float32", "float64"}

Arrays = dict[str, np.ndarray]


class ProtocolError(RuntimeError):
    """The byte stream is not a valid message (framing lost: the connection must be closed)."""


def encode(header: dict[str, Any], arrays: Arrays | None = None) -> list[bytes | memoryview]:
    """Return the message as buffers for `sock.sendmsg`-style gathering (no payload copy)."""
    header = dict(header)
    descs, bufs, offset = [], [], 0
    for name, a in (arrays or {}).items():
        a = np.ascontiguousarray(a)
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"array {name!r}: dtype {a.dtype} not allowed on the wire")
        descs.append(
            {"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": offset}
        )
        bufs.append(memoryview(a).cast("B"))
        offset += a.nbytes
    header["arrays"] = descs
    hb = json.dumps(header, separators=(",", ":")).encode()
    return [_PREFIX.pack(MAGIC, len(hb), offset), hb, *bufs]


def send_message(sock: socket.socket, header: dict[str, Any], arrays: Arrays | None = None) -> None:
    for buf in encode(header, arrays):
        sock.sendall(buf)


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError(f"connection closed after {got} of {n} bytes")
        got += k
    return buf


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _descriptors(header: dict[str, Any]) -> list[tuple[str, np.dtype, tuple[int, ...], int]]:
    """(name, dtype, shape, offset) of the header's arrays, every field checked: names are
    strings, shapes and offsets non-negative ints (no floats, no Infinity)."""
    descs = header.pop("arrays", [])
    if not isinstance(descs, list):
        raise ProtocolError("header.arrays must be a list")
    out = []
    for i, d in enumerate(descs):
        if not isinstance(d, dict):
            raise ProtocolError(f"arrays[{i}]: expected an object")
        try:
            name, dtype, shape, offset = d["name"], d["dtype"], d["shape"], d["offset"]
        except KeyError as e:
            raise ProtocolError(f"arrays[{i}]: missing {e.args[0]!r}") from None
        if not isinstance(name, str):
            raise ProtocolError(f"arrays[{i}].name: {name!r} is not a string")
        if dtype not in _DTYPES:
            raise ProtocolError(f"array {name!r}: dtype {dtype!r} not allowed")
        ints = [offset, *shape] if isinstance(shape, list) else None
        if ints is None or not all(type(v) is int and v >= 0 for v in ints):
            raise ProtocolError(
                f"array {name!r}: shape {shape!r} / offset {offset!r} are not non-negative ints"
            )
        out.append((name, np.dtype(dtype), tuple(shape), offset))
    return out


def recv_message(
    sock: socket.socket, *, read_timeout: float | None = None
) -> tuple[dict[str, Any], Arrays]:
    """Read one message. EOFError on a clean close before a message; ProtocolError on garbage.

    Nothing is allocated for the payload before the header has said what arrays it holds:
    the claimed payload length must be exactly what those arrays need. `read_timeout`: once
    the first byte arrived, the rest of the message must arrive within it (a peer that stalls
    mid-message gets TimeoutError, not a thread held forever); waiting for the first byte
    uses the socket's own timeout."""
    first = _recv_exact(sock, 1)
    old = sock.gettimeout()
    if read_timeout is not None:
        sock.settimeout(read_timeout)
    try:
        prefix = first + _recv_exact(sock, _PREFIX.size - 1)
        magic, hlen, plen = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise ProtocolError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r})")
        if hlen > MAX_HEADER_BYTES or plen > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"message too large: header {hlen} B, payload {plen} B")
        try:
            header = json.loads(bytes(_recv_exact(sock, hlen)), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as e:
            raise ProtocolError(f"header is not JSON: {e}") from e
        if not isinstance(header, dict):
            raise ProtocolError("header must be a JSON object")
        descs = _descriptors(header)
        need = 0
        for name, dt, shape, offset in descs:
            end = offset + math.prod(shape) * dt.itemsize
            if end > MAX_PAYLOAD_BYTES:
                raise ProtocolError(f"array {name!r} claims {end} B, over the payload limit")
            if end > plen:
                raise ProtocolError(f"array {name!r} runs past the payload ({end} > {plen} B)")
            need = max(need, end)
        if plen != need:
            raise ProtocolError(f"payload is {plen} B but the header's arrays need {need} B")
        payload = _recv_exact(sock, plen) if plen else bytearray()
    finally:
        if read_timeout is not None:
            sock.settimeout(old)
    arrays: Arrays = {}
    for name, dt, shape, offset in descs:
        count = math.prod(shape)
        arrays[name] = np.frombuffer(payload, dt, count, offset).reshape(shape)
    return header, arrays


# ---------------------------------------------------------------------------- shared memory


_CREATED_HERE: set[str] = set()  # blocks this process owns (tracked by its own tracker)


class SharedFrames:
    """A clip [T, H, W, 3] uint8 written once into POSIX shared memory by the client.

    The client owns (and finally unlinks) the block; the sidecar attaches, copies what it needs
    and detaches, so a sidecar crash leaks nothing and a restarted sidecar can re-read it.
    """

    def __init__(self, frames: np.ndarray, video_id: str):
        self.video_id = video_id
        self.shape = tuple(frames.shape)
        self.shm = shared_memory.SharedMemory(create=True, size=max(frames.nbytes, 1))
        np.ndarray(frames.shape, np.uint8, buffer=self.shm.buf)[...] = frames
        _CREATED_HERE.add(self.shm._name)  # noqa: SLF001

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        try:
            self.shm.close()
            self.shm.unlink()
        except FileNotFoundError:
            pass
        _CREATED_HERE.discard(self.shm._name)  # noqa: SLF001


def read_shared_frames(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Attach to a client's block, copy the frames out, detach (the client keeps ownership)."""
    shm = shared_memory.SharedMemory(name=name)
    try:
        # Python 3.11 registers attached blocks with this process's resource tracker, which
        # would unlink the client's block when the sidecar exits; the client owns it.
        if shm._name not in _CREATED_HERE:  # noqa: SLF001
            resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001
        need = math.prod(int(v) for v in shape) if shape else 0
        if len(shape) != 4 or shape[-1] != 3 or need > shm.size:
            raise InvalidRequestError(f"shm {name}: shape {shape} does not fit {shm.size} bytes")
        return np.ndarray(shape, np.uint8, buffer=shm.buf).copy()
    finally:
        shm.close()


# ---------------------------------------------------------------------------- requests / results


def handle_to_wire(h: VideoHandle) -> dict[str, Any]:
    return {"video_id": h.video_id, "shape": list(h.shape)}


def handle_from_wire(d: dict[str, Any], where: str) -> VideoHandle:
    try:
        t, hh, ww = (int(s) for s in d["shape"])
        return VideoHandle(str(d["video_id"]), t, hh, ww)
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidRequestError(f"{where}.video: {e!r}") from e


def requests_to_wire(requests: list[MaskRequest]) -> tuple[list[dict[str, Any]], Arrays]:
    """Header entries for each request; point / label / mask arrays go in the payload."""
    reqs, arrays = [], {}
    for i, r in enumerate(requests):
        prompts = []
        for j, p in enumerate(r.prompts):
            d: dict[str, Any] = {"obj_id": int(p.obj_id)}
            if p.box is not None:
                d["box"] = [float(v) for v in p.box]
            if p.points is not None:
                arrays[f"{i}.{j}.points"] = np.asarray(p.points, np.float32)
                arrays[f"{i}.{j}.labels"] = np.asarray(p.point_labels, np.int32)
            if p.mask is not None:
                arrays[f"{i}.{j}.mask"] = np.asarray(p.mask, bool)
            prompts.append(d)
        reqs.append(
            {
                "video": handle_to_wire(r.video),
                "keyframe": int(r.keyframe),
                "direction": r.direction,
                "prompts": prompts,
            }
        )
    return reqs, arrays


def requests_from_wire(reqs: Any, arrays: Arrays) -> list[MaskRequest]:
    if not isinstance(reqs, list):
        raise InvalidRequestError("requests: expected a list")
    out = []
    for i, d in enumerate(reqs):
        where = f"requests[{i}]"
        if not isinstance(d, dict):
            raise InvalidRequestError(f"{where}: expected an object")
        try:
            prompts = []
            for j, p in enumerate(d["prompts"]):
                box = p.get("box")
                prompts.append(
                    ObjectPrompt(
                        obj_id=int(p["obj_id"]),
                        box=None if box is None else tuple(float(v) for v in box),
                        points=arrays.get(f"{i}.{j}.points"),
                        point_labels=arrays.get(f"{i}.{j}.labels"),
                        mask=arrays.get(f"{i}.{j}.mask"),
                    )
                )
            keyframe = d["keyframe"]
            if not isinstance(keyframe, int):
                raise InvalidRequestError(f"{where}.keyframe: expected an int, got {keyframe!r}")
            out.append(
                MaskRequest(
                    video=handle_from_wire(d["video"], where),
                    keyframe=keyframe,
                    prompts=tuple(prompts),
                    direction=d.get("direction", "both"),
                )
            )
        except KeyError as e:
            raise InvalidRequestError(f"{where}: missing field {e.args[0]!r}") from e
        except (TypeError, ValueError, AttributeError) as e:
            if isinstance(e, InvalidRequestError):
                raise
            raise InvalidRequestError(f"{where}: {e}") from e
    return out


def results_to_wire(results: list[MaskResult]) -> tuple[list[dict[str, Any]], Arrays]:
    meta, arrays = [], {}
    for i, r in enumerate(results):
        meta.append(
            {
                "obj_ids": [int(o) for o in r.obj_ids],
                "shape": list(r.object_masks.shape),
                "backend": r.backend,
            }
        )
        arrays[f"{i}.masks"] = np.packbits(r.object_masks, axis=None)
        arrays[f"{i}.covered"] = np.asarray(r.covered, bool)
    return meta, arrays


def results_from_wire(meta: list[dict[str, Any]], arrays: Arrays) -> list[MaskResult]:
    out = []
    for i, m in enumerate(meta):
        shape = tuple(m["shape"])
        n = int(np.prod(shape))
        masks = np.unpackbits(arrays[f"{i}.masks"], count=n).reshape(shape).view(bool)
        out.append(
            MaskResult(
                obj_ids=tuple(m["obj_ids"]),
                object_masks=masks,
                covered=arrays[f"{i}.covered"].copy(),
                backend=m["backend"],
            )
        )
    return out


# ---------------------------------------------------------------------------- image features


class ImageFeatures(NamedTuple):
    """Frozen SAM2 image-encoder output for N frames, as `_forward_sam_heads` takes it on a
    frame without memory (the image predictor's `set_image` / Sa2VA's `inject_language_embd`):

    image_embed [N, C, h, w] float32: the top FPN level plus `no_mem_embed` (when the model has
        `directly_add_no_mem_embed`, which every released SAM2 config sets);
    high_res_0 [N, C/8, 4h, 4w], high_res_1 [N, C/4, 2h, 2w] float32: the two finer FPN levels
        already projected by the mask decoder's conv_s0 / conv_s1 (`forward_image`);
    cached [N] bool: the frame came from the sidecar's feature cache.
    """

    image_embed: np.ndarray
    high_res_0: np.ndarray
    high_res_1: np.ndarray
    cached: np.ndarray

    @property
    def high_res_feats(self) -> list[np.ndarray]:
        """The list `SAM2MaskDecoderModule` / `_forward_sam_heads` take."""
        return [self.high_res_0, self.high_res_1]


def check_frame_indices(frames: Any, num_frames: int, where: str = "features.frames") -> list[int]:
    """A non-empty list of ints in [0, num_frames), else InvalidRequestError naming the entry."""
    if isinstance(frames, np.ndarray):
        frames = frames.tolist()
    if not isinstance(frames, list | tuple) or not frames:
        raise InvalidRequestError(f"{where}: expected a non-empty list of frame indices")
    out = []
    for i, f in enumerate(frames):
        if isinstance(f, bool) or not isinstance(f, int | np.integer) or not 0 <= f < num_frames:
            raise InvalidRequestError(
                f"{where}[{i}]: {f!r} is not a frame index in [0, {num_frames})"
            )
        out.append(int(f))
    return out


def features_to_wire(feats: ImageFeatures) -> Arrays:
    return {
        "image_embed": np.asarray(feats.image_embed, np.float32),
        "high_res_0": np.asarray(feats.high_res_0, np.float32),
        "high_res_1": np.asarray(feats.high_res_1, np.float32),
        "cached": np.asarray(feats.cached, bool),
    }


def features_from_wire(arrays: Arrays) -> ImageFeatures:
    try:
        return ImageFeatures(
            *(np.array(arrays[k]) for k in ("image_embed", "high_res_0", "high_res_1", "cached"))
        )
    except KeyError as e:
        raise ProtocolError(f"features reply: missing array {e.args[0]!r}") from e


def make_private_socket_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="jaxseg-sidecar-")  # mkdtemp creates it 0700


def bind_private_socket(path: str) -> socket.socket:
    """Bind a Unix socket that is 0600 from the moment it exists (umask, then chmod to be sure)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return sock
