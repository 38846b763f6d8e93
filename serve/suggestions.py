"""Suggested translations (`POST /suggest`, on with `nmt serve --suggestions DIR`), kept as a training corpus.

Each suggestion is one JSON line appended to `DIR/{source}-{target}/train.jsonl`, `{"de": original, "en":
suggestion}`: the layout `nmt train` reads (`data.path: DIR/de-en`, the columns named by language), so the folder
is the export. A line is written whole under an exclusive lock (every HTTP process appends to the same files) and
flushed to disk (fsync) before the answer, so an accepted suggestion survives a crash; a line cut short by a power
loss is ended before the next one is appended, and skipped when the file is read (`read_suggestions`; `nmt train`
stops at it with the line's number: remove it).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

FILE_NAME = "train.jsonl"


class SuggestionStore:
    """Appends suggestions under `directory`, one corpus folder per language pair."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, source: str, target: str) -> Path:
        return self.directory / f"{source}-{target}" / FILE_NAME

    def add(self, original: str, suggestion: str, source: str, target: str) -> None:
        """Append one pair durably (the languages are served codes, checked by the caller)."""
        path = self.path(source, target)
        path.parent.mkdir(exist_ok=True)
        line = json.dumps({source: original, target: suggestion}, ensure_ascii=False) + "\n"
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut short by a crash stays on its own
                line = "\n" + line
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock


def read_suggestions(path: str | Path) -> list[dict[str, str]]:
    """The suggestions of one file, skipping a last line cut short (not JSON)."""
    found = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found
