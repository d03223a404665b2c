"""Progress for terminals and for clusters.

On an interactive terminal a training loop shows tqdm bars. When stdout is not a TTY (a
cluster job's log file, ``kubectl logs``, a CI log) or with ``--no-progress``, it logs one
plain line every ``log_every`` steps instead (python ``logging``, absl's layout: level,
timestamp, logger) - no ``\\r`` soup - with the step, the rate and the bar's postfix:

    I1205 19:03:32.240 jaxseg.train] grpo step 10/30 (33%) 2.41 s/step reward=0.41 J=0.08

Only process 0 shows or logs progress (every process computes the same steps).
:func:`setup_logging` (called by the CLI) installs that layout on the root logger and keeps
processes other than 0 to warnings and errors.

``tqdm(...)`` here is a drop-in for ``tqdm.auto.tqdm`` in the training loops
(``desc``/``total``/``disable``, iteration, ``update``, ``set_postfix``, ``close``,
``tqdm.write``).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from tqdm.auto import tqdm as _tqdm

log = logging.getLogger("jaxseg.train")
LOG_EVERY = 10  # steps between log lines (metrics.log_every in a config)
FORMAT = "%(levelname).1s%(asctime)s.%(msecs)03d %(name)s] %(message)s"
DATEFMT = "%m%d %H:%M:%S"


def configure(config=None, *, log_every: int | None = None) -> None:
    """Sets the steps between log lines from ``config.metrics.log_every`` or ``log_every``."""
    global LOG_EVERY
    if log_every is None and config is not None:
        m = config.get("metrics")
        log_every = m.get("log_every") if m is not None else None
    if log_every:
        LOG_EVERY = max(int(log_every), 1)


def process_index() -> int:
    """This process's index once JAX's backends are up (0 before: nothing is split yet)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return 0
    try:
        from jax._src import xla_bridge

        if not xla_bridge.backends_are_initialized():
            return 0
        return int(jax.process_index())
    except Exception:  # noqa: BLE001 - a private API moved: assume one process
        return 0


class _Process0(logging.Filter):
    """Processes other than 0 pass only warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or process_index() == 0


def log_handler(stream=None) -> logging.Handler:
    """A handler writing absl-style lines (level, timestamp, logger) to `stream` (stderr),
    dropping info lines on processes other than 0."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    handler.addFilter(_Process0())
    return handler


def setup_logging(level: int = logging.INFO) -> None:
    """:func:`log_handler` on stderr for the ``jaxseg`` loggers; idempotent."""
    root = logging.getLogger("jaxseg")
    if any(getattr(h, "_jaxseg", False) for h in root.handlers):
        return
    handler = log_handler()
    handler._jaxseg = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False  # one line per record, also where the root logger has handlers


def interactive() -> bool:
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


def bars(progress: bool) -> bool:
    """Whether code with its own tqdm bars (synthetic data, cold-start traces) should show
    them: `progress`, on an interactive terminal, in process 0 - never into a cluster log."""
    return bool(progress) and interactive() and process_index() == 0


class LogProgress:
    """A tqdm stand-in that logs a plain line every ``every`` steps (and the last)."""

    def __init__(self, iterable=None, *, desc: str = "", total: int | None = None, every=None):
        self.iterable = iterable
        self.desc = desc or "progress"
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.every = every or LOG_EVERY
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self._t0 = time.perf_counter()
        self._first = getattr(iterable, "start", 0) if isinstance(iterable, range) else 0
        self._last_logged = -1

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self.postfix.update(dict(ordered_dict or {}), **kwargs)

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += n
        done = self.total is not None and self.n >= self.total
        if self.n % self.every == 0 or done or self.n == 1:
            self._log()

    def _log(self) -> None:
        if self._last_logged == self.n or process_index() != 0:
            return
        self._last_logged = self.n
        rate = (time.perf_counter() - self._t0) / max(self.n, 1)
        step = self._first + self.n
        if self.total:
            where = f"{step}/{self._first + self.total} ({100 * self.n / self.total:.0f}%)"
        else:
            where = str(step)
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        log.info("%s step %s %.2f s/step %s", self.desc, where, rate, extra)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self.n and self._last_logged != self.n:
            self._log()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def write(message: str, file=None, end: str = "\n") -> None:
        if process_index() == 0:
            log.info("%s", message)


class _Silent(LogProgress):
    def _log(self) -> None:
        pass

    @staticmethod
    def write(message: str, file=None, end: str = "\n") -> None:
        pass


def tqdm(iterable=None, *, desc: str = "", total: int | None = None, disable: bool = False, **kw):
    """A tqdm bar on an interactive terminal of process 0; else log lines (also when
    ``disable``: ``--no-progress`` drops the bar, not the log); nothing on other processes."""
    if process_index() != 0:
        return _Silent(iterable, desc=desc, total=total)
    if interactive() and not disable:
        return _tqdm(iterable, desc=desc, total=total, **kw)
    return LogProgress(iterable, desc=desc, total=total)


def _write(message: str, file=None, end: str = "\n") -> None:
    if process_index() != 0:
        return
    if interactive():
        _tqdm.write(message, file=file, end=end)
    else:
        LogProgress.write(message)


tqdm.write = _write  # type: ignore[attr-defined]
