"""Writing metrics to a file, for node_exporter's textfile collector."""

from __future__ import annotations

import contextlib
import os
import secrets

from pytheus.collection import collect_registry
from pytheus.exposition import text
from pytheus.registry import REGISTRY, Registry


def write_to_textfile(path: str | os.PathLike[str], registry: Registry = REGISTRY) -> None:
    """Write the metrics of ``registry`` to ``path`` in the text format (0.0.4), atomically.

    The text goes to a temporary file in the same directory, which then replaces ``path`` in
    one step: a reader sees the old file or the new one, never a part. On any error ``path`` is
    left as it was and the temporary file is removed. node_exporter reads only ``*.prom`` files,
    so it never reads the temporary one.

    Example::

        from pytheus.exposition import write_to_textfile

        write_to_textfile("/var/lib/node_exporter/textfile/backup.prom", registry)
    """
    body = text.render(collect_registry(registry, live=True)).encode("utf-8")
    directory, name = os.path.split(os.fspath(path))
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
