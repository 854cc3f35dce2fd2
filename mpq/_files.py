"""Files mpq writes for a user (``mpq export --out``): whole or not at all, and never over a file
the user did not ask to replace."""

from __future__ import annotations

import os
from pathlib import Path

from mpq.exceptions import InvalidParameterError


def check_new_file(out: str | os.PathLike, force: bool) -> None:
    """Refuse an ``--out`` that is an existing file, unless ``force``: an export never replaces a
    file without being told to (a folder is refused when written, with its reason)."""
    path = Path(out)
    if path.is_file() and not force:
        raise InvalidParameterError(
            f"--out {str(path)!r} exists; give --force to replace it, or another --out (nothing was written)."
        )


def write_text_atomically(out: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``out``, then rename it to ``out``: a write that
    fails (a full disk, a file size limit) leaves ``out`` as it was and no temporary file.

    Raises:
        InvalidParameterError: the file cannot be written, with the reason and the fix.
    """
    path = Path(out)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InvalidParameterError(
            f"cannot write {out}: {exc.strerror}; give --out a file in a folder that exists and is writable."
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
