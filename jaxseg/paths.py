"""Local and cloud paths (``gs://bucket/run``, ``s3://...``) through ``etils.epath``.

Every path the project reads or writes (workdir, checkpoints, metrics, data roots, exports,
evaluation outputs) is an :func:`as_path` path, as in big_vision and MaxText, so a run whose
workdir is a bucket loses nothing when its TPU VM is preempted. ``gs://`` needs ``gcsfs``
(installed with jaxseg); orbax writes checkpoints there itself (tensorstore).

Code that can only work on a local folder (an HF ``save_pretrained``, the PNG readers, the
tokenizer files) goes through two helpers:

- :func:`local_dir` - a local folder with a remote folder's files (downloaded once into a
  cache, or into a fresh temporary folder with ``cache=False``); a local path is returned as
  it is;
- :func:`staged_dir` - a local folder to write into, uploaded to the remote one on success;
  for a local path, the path itself.

``JAXSEG_CACHE`` sets the cache root (default ``~/.cache/jaxseg``). Against a GCS emulator,
``STORAGE_EMULATOR_HOST`` (gcsfs) and ``TENSORSTORE_GCS_HTTP_URL`` (orbax) name it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from etils import epath

PathLike = str | os.PathLike
_COMPLETE = ".jaxseg-download-complete"


def as_path(path: PathLike | epath.Path) -> epath.Path:
    """``path`` as an ``epath.Path`` (local, or ``gs://``/``s3://``...; never ``./gs:/...``)."""
    return epath.Path(path)


def is_remote(path: PathLike | epath.Path) -> bool:
    """True for a URL-style path (``gs://b/x``), False for a local one."""
    return "://" in os.fspath(path) if not isinstance(path, epath.Path) else "://" in str(path)


def cache_root() -> Path:
    return Path(os.environ.get("JAXSEG_CACHE", Path.home() / ".cache" / "jaxseg"))


def _files(root: epath.Path) -> Iterator[tuple[epath.Path, str]]:
    """(file, path relative to root) for every file under ``root``."""
    stack = [(root, "")]
    while stack:
        node, rel = stack.pop()
        for child in node.iterdir():
            name = f"{rel}{child.name}"
            if child.is_dir():
                stack.append((child, name + "/"))
            else:
                yield child, name


def download(src: PathLike | epath.Path, dst: PathLike) -> Path:
    """Copies the files under ``src`` (any epath) into the local folder ``dst``."""
    src, dst = as_path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for file, rel in _files(src):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.read_bytes())
    return dst


def upload(src: PathLike, dst: PathLike | epath.Path) -> epath.Path:
    """Copies the files under the local folder ``src`` to ``dst`` (any epath)."""
    src, dst = Path(src), as_path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dst / file.relative_to(src).as_posix()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.read_bytes())
    return dst


def local_dir(path: PathLike | epath.Path, *, cache: bool = True) -> Path:
    """A local folder holding ``path``'s files: ``path`` itself when local; for a remote
    folder a copy, downloaded once into the cache (``cache=True``: for inputs that do not
    change once written, e.g. a dataset or a run's processor) or afresh into a temporary
    folder (``cache=False``)."""
    if not is_remote(path):
        return Path(path)
    url = str(path).rstrip("/")
    if not as_path(url).is_dir():
        raise FileNotFoundError(f"{url} does not exist (or holds no files)")
    if not cache:
        return download(url, tempfile.mkdtemp(prefix="jaxseg-remote-"))
    scheme, _, rest = url.partition("://")
    digest = hashlib.sha1(url.encode()).hexdigest()[:10]
    target = cache_root() / "remote" / scheme / f"{rest.replace('/', '_')[-80:]}-{digest}"
    if not (target / _COMPLETE).is_file():
        shutil.rmtree(target, ignore_errors=True)
        download(url, target)
        (target / _COMPLETE).write_text(url)
    return target


@contextlib.contextmanager
def staged_dir(path: PathLike | epath.Path) -> Iterator[Path]:
    """A local folder to write ``path``'s files into: ``path`` itself when local (created);
    for a remote ``path`` a temporary folder whose files are uploaded there when the block
    ends without an error (then removed)."""
    if not is_remote(path):
        local = Path(path)
        local.mkdir(parents=True, exist_ok=True)
        yield local
        return
    tmp = Path(tempfile.mkdtemp(prefix="jaxseg-stage-"))
    try:
        yield tmp
        upload(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
