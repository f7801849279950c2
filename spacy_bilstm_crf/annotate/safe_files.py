"""Files and folders inside an output folder, opened, made and removed without
following a symbolic link: the folder may be on shared storage, and whoever else
can write to it may have left links to files of the user's. Each refusal is a
one-line ``ValueError`` naming the path."""

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import IO, Any

NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOSE_ON_EXEC = getattr(os, "O_CLOEXEC", 0)
NON_BLOCKING = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted in the folder must not hang open()


def link_error(path: Path) -> ValueError:
    return ValueError(
        f"{path}: is a symbolic link; annotate does not follow links inside its output folder "
        "(remove it, or choose a new output folder)"
    )


def open_file(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open(path, flags)`` refusing a symbolic link at ``path`` and anything
    but a regular file, and, to write, a file with other (hard) links; the file
    descriptor."""
    if not NO_FOLLOW and path.is_symlink():  # no O_NOFOLLOW (Windows): check first
        raise link_error(path)
    try:
        fd = os.open(path, flags | NO_FOLLOW | NON_BLOCKING | CLOSE_ON_EXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENXIO and path.is_symlink()):
            raise link_error(path) from None
        if exc.errno == errno.ENXIO:
            raise ValueError(f"{path}: is not a regular file") from None
        raise
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode):
        os.close(fd)
        raise ValueError(f"{path}: is not a regular file; annotate only writes regular files in its output folder")
    if flags & (os.O_WRONLY | os.O_RDWR) and found.st_nlink > 1:
        os.close(fd)
        raise ValueError(f"{path}: has other hard links; annotate writes only files of its own in its output folder")
    return fd


def open_text(path: Path, how: str) -> IO[str]:
    """``path`` as a UTF-8 text file: ``"r"`` to read, ``"x"`` to create (it must
    not exist), ``"a"`` to append (created if missing)."""
    return open(open_file(path, _FLAGS[how]), _MODES[how], encoding="utf8")


def open_binary(path: Path, how: str) -> IO[bytes]:
    """``path`` as a binary file; ``how`` as for ``open_text``, plus ``"r+"``."""
    return open(open_file(path, _FLAGS[how]), _MODES[how] + "b")


def kind(path: Path) -> str:
    """``"missing"``, ``"link"``, ``"folder"``, ``"file"`` or ``"other"``, by
    ``lstat`` (a link is not followed)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "folder"
    return "file" if stat.S_ISREG(mode) else "other"


def make_folder(path: Path) -> Path:
    """The folder ``path``, made if missing; a link or file there is refused."""
    try:
        os.mkdir(path)
    except FileExistsError:
        found = kind(path)
        if found == "link":
            raise link_error(path) from None
        if found != "folder":
            raise ValueError(f"{path}: is not a folder") from None
    return path


def remove_file(path: Path) -> None:
    """Delete the file (or link: the link, not its target) ``path``; a folder
    there is refused."""
    if kind(path) == "folder":
        raise ValueError(f"{path}: is a folder where annotate expects one of its files")
    os.unlink(path)


def remove_folder(path: Path) -> None:
    """Delete the folder ``path`` and everything in it; links inside are removed,
    never followed, and a link at ``path`` itself is refused."""
    found = kind(path)
    if found == "missing":
        return
    if found == "link":
        raise link_error(path)
    if found != "folder":
        raise ValueError(f"{path}: is not a folder")
    shutil.rmtree(path)  # safe against links inside where the platform allows it (rmtree.avoids_symlink_attacks)


def fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk."""
    fd = open_file(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_MODES = {"r": "r", "r+": "r+", "x": "w", "a": "a"}
_FLAGS: Any = {
    "r": os.O_RDONLY,
    "r+": os.O_RDWR,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
}
