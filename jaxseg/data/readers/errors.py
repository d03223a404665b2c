"""Errors for bad benchmark input, and the skip-or-raise policy readers share.

Every problem names the file and the field inside it (a JSON path such as
`videos["abc"].expressions["3"].anno_id`), so a user can open the file and fix it.
"""

from __future__ import annotations

import warnings
from pathlib import Path


class DataFormatError(ValueError):
    """A benchmark file that does not say what its format promises."""

    def __init__(self, path: str | Path, field: str, problem: str):
        self.path = str(path)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.path}: {field}: {problem}")


class BadInputWarning(UserWarning):
    """Emitted for every item skipped under `skip_bad=True`."""


class BadInputPolicy:
    """Raise on the first bad item, or (skip_bad=True) count it, warn, and go on."""

    def __init__(self, skip_bad: bool = False):
        self.skip_bad = skip_bad
        self.skipped: list[DataFormatError] = []

    def report(self, error: DataFormatError) -> None:
        if not self.skip_bad:
            raise error
        self.skipped.append(error)
        warnings.warn(
            f"skipped bad input #{len(self.skipped)}: {error}", BadInputWarning, stacklevel=3
        )
