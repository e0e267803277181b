"""Discovery: walk a folder and classify every entry (audio by extension, other files, directories
named like audio, symlink loops) without ever raising on a hostile tree.
"""
from __future__ import annotations

import errno
import os
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path

# Extensions libsndfile (1.1+) reads; anything else is "not audio" (D115) and never opened.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
    ".snd", ".w64", ".rf64", ".caf", ".sd2", ".voc", ".htk", ".mat", ".pvf", ".xi", ".sf", ".ircam",
    ".nist", ".sph", ".paf", ".iff", ".svx", ".wve", ".mpc", ".avr",
})

def display_path(path: Path | str) -> str:
    """A path as text that always encodes to UTF-8 (undecodable bytes become U+FFFD), for JSON/HTML."""
    text = os.fspath(path)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class Entry:
    """One thing found under the root. kind: audio | non_audio | directory | directory_loop |
    symlink_loop (a file link that resolves to itself) | unreadable."""

    path: Path
    relpath: str
    kind: str
    size_bytes: int = 0
    reason: str | None = None


def _is_audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def discover(root: Path | str) -> list[Entry]:
    """Every entry under `root`, sorted by relative path. Never raises for entries inside root.

    Directory symlinks are followed (corpora are often assembled from links) but each real
    directory is entered once, so a link back to an ancestor is reported, not followed forever.
    """
    root = Path(root)
    entries: list[Entry] = []
    seen_dirs: set[tuple[int, int]] = set()
    try:
        st = root.stat()
        seen_dirs.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    stack: list[Path] = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            entries.append(Entry(folder, display_path(os.path.relpath(folder, root)), "unreadable",
                                 reason=f"cannot list folder: {exc.strerror or exc}"))
            continue
        for child in children:
            path = Path(child.path)
            rel = display_path(os.path.relpath(path, root))
            try:
                st = path.stat()  # follows symlinks
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    entries.append(Entry(path, rel, "symlink_loop", reason="symlink loop (the link resolves to itself)"))
                elif child.is_symlink():
                    entries.append(Entry(path, rel, "unreadable", reason="broken symlink (target does not exist)"))
                else:
                    entries.append(Entry(path, rel, "unreadable", reason=f"cannot stat: {exc.strerror or exc}"))
                continue
            if stat_mod.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen_dirs:
                    entries.append(Entry(path, rel, "directory_loop",
                                         reason="directory link to a folder already searched (loop); not followed"))
                    continue
                seen_dirs.add(key)
                if _is_audio_name(child.name):
                    entries.append(Entry(path, rel, "directory",
                                         reason="a directory named like an audio file; searched as a folder"))
                stack.append(path)
            elif stat_mod.S_ISREG(st.st_mode):
                if _is_audio_name(child.name) and not child.name.startswith("._"):
                    entries.append(Entry(path, rel, "audio", size_bytes=st.st_size))
                else:
                    why = ("AppleDouble metadata file (macOS '._' sidecar), not audio" if child.name.startswith("._")
                           else f"not an audio file extension ({os.path.splitext(child.name)[1] or 'none'})")
                    entries.append(Entry(path, rel, "non_audio", size_bytes=st.st_size, reason=why))
            else:
                entries.append(Entry(path, rel, "non_audio", reason="not a regular file (device, pipe or socket)"))
    entries.sort(key=lambda e: e.relpath)
    return entries
