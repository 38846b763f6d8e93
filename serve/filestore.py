"""The translated files of /translate_file, waiting for /download_file: one directory (--files-dir, else a private
temporary one removed when the server stops), each file named `<uuid4>.<safe name>` and deleted --file-ttl seconds
after it was written (every upload and download sweeps)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from serve.files import secure_filename

DEFAULT_TTL = 1800.0  # seconds a translated file is kept: LibreTranslate removes them after 30 minutes
DEFAULT_MAX_BYTES = 10 << 20  # bytes of an uploaded file
NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.[A-Za-z0-9_.-]{1,200}$")


class FileStore:
    """The translated files: one directory (shared by every HTTP process of a server), each file deleted `ttl`
    seconds after it was written. Without `directory`, a private temporary one, removed at exit."""

    def __init__(self, directory: str | None = None, ttl: float = DEFAULT_TTL, max_bytes: int = DEFAULT_MAX_BYTES):
        self.ttl, self.max_bytes = ttl, max_bytes
        if directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="nmt-files-"))  # mode 0700
            owner = os.getpid()
            atexit.register(self._remove, owner)  # the forked HTTP processes end without running it
        else:
            self.directory = Path(directory)
            self.directory.mkdir(parents=True, exist_ok=True)

    def _remove(self, owner: int) -> None:
        if os.getpid() == owner:
            shutil.rmtree(self.directory, ignore_errors=True)

    def sweep(self, now: float | None = None) -> int:
        """Delete the files older than the time to live; how many were deleted."""
        now = time.time() if now is None else now
        deleted = 0
        for entry in os.scandir(self.directory):
            try:
                if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > self.ttl:
                    os.unlink(entry.path)
                    deleted += 1
            except FileNotFoundError:  # another process swept it first
                continue
        return deleted

    def save(self, filename: str, data: bytes) -> str:
        """Store a translated file under a new name, `<uuid4>.<safe filename>`, and return that name."""
        self.sweep()
        name = f"{uuid.uuid4()}.{secure_filename(filename)}"
        temporary = self.directory / f".{name}.part"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, self.directory / name)
        return name

    def read(self, name: str) -> bytes | None:
        """A stored file's bytes, or None: not a name this store gives, not there, or expired."""
        self.sweep()
        if not NAME.match(name):
            return None
        path = self.directory / name
        try:
            if time.time() - path.stat().st_mtime > self.ttl:
                return None
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
