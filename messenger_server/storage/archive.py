"""The chat-history archive on disk (SPEC.md "Chat history on disk"): one folder per room,
``session_info.json``, an optional ``session_img.png``, and one ``YYYY/MM/DD.json`` per day.

What it is: plain, blocking file I/O with a crash-safe, O(1) append. A day file is
``HEADER + r1 + SEP + r2 ... + rk + TAIL``, one compact JSON record per line, so an append
overwrites the 4-byte TAIL in place and never reads or rewrites earlier records.

What it is not: it keeps no state and takes no locks. The database remembers each room's
*committed state* ``(committed_day, committed_size)`` (the byte length of that day's file after
the last committed append) and serialises the writers of a room with a row lock; every call
here takes that state and returns the new size. Bytes beyond the committed size belong to an
append whose transaction never committed: readers never see them and the next append or
``repair`` overwrites them. Nothing here imports gevent: a gevent caller should run the
fsyncs (``PendingSync.sync``) in its thread pool. See docs/storage.md "The archive on disk".
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Sequence

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import is_valid_session_id, is_valid_user_id

HEADER = b'{"chat": [\n'
SEP = b",\n"
TAIL = b"\n]}\n"
MIN_FILE_SIZE = len(HEADER) + len(b"{}") + len(TAIL)  # a file always holds >= 1 record
INFO_NAME = "session_info.json"
IMAGE_NAME = "session_img.png"
SESSION_ID_LEN = 15  # YYYYMMDD_NNNNNN
MAX_CACHED_ROOMS = 10_000   # the rooms being written to; as many as messages.py remembers rows of

# [0-9], not \d: \d also matches non-ASCII digits, which int() would happily accept.
_YEAR_RE = re.compile(r"([0-9]{4})")
_MONTH_RE = re.compile(r"([0-9]{2})")
_DAY_FILE_RE = re.compile(r"([0-9]{2})\.json")
_SEQ_KEY = b'"seq":'
_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class ArchiveError(Exception):
    """The files disagree with the committed state the caller passed: damage on disk, or a
    committed state that does not belong to these files. Nothing was written."""


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message)


def _session_id_ok(value: Any) -> bool:
    # messenger_protocol's pattern uses \d, which also matches e.g. fullwidth digits.
    return is_valid_session_id(value) and value.isascii()


@dataclass
class PendingSync:
    """The durable half of an append, split off so a caller can write to many rooms and then
    sync all of them at once (group commit, fsyncs in parallel threads).

    ``sync()`` must return before the caller commits the new size to the database.
    """

    fd: int
    dirs: tuple[Path, ...] = ()  # directories that got new entries: fsync them too

    def sync(self) -> None:
        """fdatasync the day file, fsync the new directory entries, then close the file."""
        if self.fd < 0:
            raise ValueError("PendingSync already closed")
        try:
            _fdatasync(self.fd)
            for directory in self.dirs:
                _fsync_dir(directory)
        finally:
            self.close()

    def close(self) -> None:
        """Close without syncing (the append is then not durable and must not be committed)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class Archive:
    """The archive under one root folder. Rooms are addressed by the Path ``room_dir`` returns;
    every method checks that such a Path is a well-formed room folder directly under the root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        # Room folders already checked (ids, and resolved inside the root) and existing: every
        # send batch asks for its rooms' folders, and resolving a path costs a system call per
        # component (BENCHMARKS.md, "the archive's path checks"). Only existing folders are
        # kept: one not made yet is checked again once it is.
        self._room_dirs: dict[tuple[str, str], Path] = {}
        self._checked: set[Path] = set()

    # -- paths -------------------------------------------------------------------------------
    def room_dir(self, session_id: Any, creator_id: Any) -> Path:
        """The folder ``<SESSION_ID>_<CREATOR_ID>`` of a room; ``bad_request`` for invalid ids."""
        try:
            known = self._room_dirs.get((session_id, creator_id))
        except TypeError:                 # unhashable: refused below
            known = None
        if known is not None:
            return known
        if not _session_id_ok(session_id):
            raise _bad("session_id must look like YYYYMMDD_NNNNNN")
        if not is_valid_user_id(creator_id):
            raise _bad("creator_id is not a valid user id")
        path = self.root / f"{session_id}_{creator_id}"
        # The validated ids make the name one plain component; resolving also refuses a room
        # folder that is a symlink leading out of the root.
        if path.resolve().parent != self.root:
            raise _bad("room folder is outside the archive root")
        if path.is_dir():
            if len(self._room_dirs) >= MAX_CACHED_ROOMS:
                self._room_dirs.clear()
                self._checked.clear()
            self._room_dirs[session_id, creator_id] = path
            self._checked.add(path)
        return path

    def _room(self, room: Path) -> Path:
        if room in self._checked:
            return room
        room = Path(room)
        name = room.name
        if (room.parent != self.root or name[SESSION_ID_LEN:SESSION_ID_LEN + 1] != "_"
                or not _session_id_ok(name[:SESSION_ID_LEN])
                or not is_valid_user_id(name[SESSION_ID_LEN + 1:])):
            raise _bad(f"not a room folder of this archive: {str(room)!r}")
        return room

    # -- appending ---------------------------------------------------------------------------
    def append(self, room: Path, day: date, records: Sequence[bytes],
               committed_day: date | None, committed_size: int) -> int:
        """Append ``records`` (from ``make_record``, oldest first) to ``day``'s file durably and
        return the file's new committed size, which the caller then commits with the messages.

        ``committed_day``/``committed_size`` are the room's committed state (None/0 for a room
        without messages). ``day`` must not be before ``committed_day``: clamp it if the clock
        went back, since a new day file is written from scratch.
        """
        size, pending = self.write_records(room, day, records, committed_day, committed_size)
        pending.sync()
        return size

    def write_records(self, room: Path, day: date, records: Sequence[bytes],
                      committed_day: date | None, committed_size: int) -> tuple[int, PendingSync]:
        """``append`` without the sync: returns ``(new_size, pending)``; the caller must call
        ``pending.sync()`` (or ``close()`` on failure) and only then commit ``new_size``.

        Same day: the records are written over the old TAIL at ``committed_size - len(TAIL)``
        and the file is truncated at the new end, which also wipes whatever a crashed,
        never-committed append left there. New day: the committed day's file is repaired first,
        then the new file is written from scratch (O_TRUNC drops a stray from a crash).
        """
        room = self._room(room)
        _check_day(day)
        data = _join(records)
        path = _day_file(room, day)
        if committed_day is not None and day < committed_day:
            raise ValueError(f"day {day} is before the committed day {committed_day}")
        dirs: tuple[Path, ...] = ()
        if day == committed_day:
            _check_size(committed_size)
            offset, payload, flags = committed_size - len(TAIL), SEP + data + TAIL, os.O_RDWR
        else:
            if committed_day is not None:
                # Once committed_day moves on, readers take that older file whole: clean it.
                self._repair_file(room, committed_day, committed_size)
            folder = Path(os.path.dirname(path))
            created = _makedirs(folder)
            dirs = tuple(sorted({folder} | {d.parent for d in created}))
            offset, payload = 0, HEADER + data + TAIL
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
        fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        try:
            # Two O(1) checks that the committed state fits this file, so a wrong state can
            # never write into the middle of committed records.
            if offset and (os.fstat(fd).st_size < committed_size
                           or os.pread(fd, 1, offset - 1) != b"}"):
                raise ArchiveError(f"{path} does not match committed size {committed_size}")
            end = offset + _pwrite_all(fd, payload, offset)
            os.ftruncate(fd, end)  # drops stray bytes beyond the new end
        except BaseException:
            os.close(fd)
            raise
        return end, PendingSync(fd, dirs)

    # -- reading -----------------------------------------------------------------------------
    def read_day(self, room: Path, day: date, committed_day: date | None,
                 committed_size: int) -> bytes | None:
        """The committed bytes of ``day``'s file (a valid DD.json), or None when there is none.

        Before the committed day: the whole file. The committed day: its first
        ``committed_size - len(TAIL)`` bytes plus TAIL; an append never changes those bytes, so
        this is safe while a writer works and never shows uncommitted records. Later days are
        strays of an uncommitted append: None.
        """
        room = self._room(room)
        _check_day(day)
        if committed_day is None or day > committed_day:
            return None
        path = _day_path(room, day)
        try:
            with open(path, "rb") as f:
                if day < committed_day:
                    return f.read()
                _check_size(committed_size)
                want = committed_size - len(TAIL)
                data = f.read(want)
        except FileNotFoundError:
            return None
        if len(data) < want:
            raise ArchiveError(f"{path} is shorter than its committed size {committed_size}")
        return data + TAIL

    def first_seq(self, room: Path, day: date) -> int | None:
        """The seq of a day file's first record, reading only that line (committed or not:
        an append never changes the first line)."""
        room = self._room(room)
        _check_day(day)
        try:
            with open(_day_path(room, day), "rb") as f:
                if f.readline() != HEADER:
                    return None
                line = f.readline().rstrip(b"\n")
        except FileNotFoundError:
            return None
        line = line[:-1] if line.endswith(b",") else line
        return _seq_of(line) if line.startswith(b"{") and line.endswith(b"}") else None

    def list_days(self, room: Path) -> list[date]:
        """Days that have a file, ascending. This includes strays: a caller should drop days
        after its committed_day (or have ``repair`` delete them)."""
        return _scan_days(self._room(room), after=None)

    # -- repair ------------------------------------------------------------------------------
    def repair(self, room: Path, committed_day: date | None, committed_size: int) -> bool:
        """Make the files exactly their committed content; True when something was changed.

        Cuts the committed day's file back to ``committed_size`` (restoring TAIL) and deletes
        day files after ``committed_day`` (all of them when it is None). When nothing is wrong
        this costs a stat, a 4-byte read and listing the newest year/month folders.
        """
        room = self._room(room)
        changed = False
        if committed_day is not None:
            _check_day(committed_day)
            changed = self._repair_file(room, committed_day, committed_size)
        for stray in _scan_days(room, after=committed_day):
            os.unlink(_day_path(room, stray))  # need not be durable: if it returns, still a stray
            changed = True
        return changed

    def _repair_file(self, room: Path, day: date, size: int) -> bool:
        _check_size(size)
        path = _day_path(room, day)
        tail_at = size - len(TAIL)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ArchiveError(f"{path} is missing but {size} bytes are committed") from None
        try:
            actual = os.fstat(fd).st_size
            if actual == size and os.pread(fd, len(TAIL), tail_at) == TAIL:
                return False
            if actual < size or os.pread(fd, 1, tail_at - 1) != b"}":
                raise ArchiveError(f"{path} does not match committed size {size}")
            _pwrite_all(fd, TAIL, tail_at)
            os.ftruncate(fd, size)
            _fdatasync(fd)
            return True
        finally:
            os.close(fd)

    # -- room info and image -----------------------------------------------------------------
    def write_info(self, room: Path, session_name: str) -> None:
        """Write ``session_info.json`` atomically (the room folder is created if needed)."""
        room = self._room(room)
        if not isinstance(session_name, str):
            raise TypeError("session_name must be a str")
        info = {"session_id": room.name[:SESSION_ID_LEN], "session_name": session_name,
                "creator_id": room.name[SESSION_ID_LEN + 1:]}
        text = json.dumps(info, ensure_ascii=False, indent=2) + "\n"
        _atomic_write(room / INFO_NAME, text.encode())

    def read_info(self, room: Path) -> dict[str, Any] | None:
        """The parsed ``session_info.json``, or None when the room has none."""
        data = self._read(room, INFO_NAME)
        return None if data is None else json.loads(data)

    def write_image(self, room: Path, png: bytes) -> None:
        """Write ``session_img.png`` atomically (the caller checks the bytes are an image)."""
        _atomic_write(self._room(room) / IMAGE_NAME, bytes(png))

    def read_image(self, room: Path) -> bytes | None:
        """The room image's bytes, or None when the room has none."""
        return self._read(room, IMAGE_NAME)

    def _read(self, room: Path, name: str) -> bytes | None:
        try:
            return (self._room(room) / name).read_bytes()
        except FileNotFoundError:
            return None


# -- records and day files (pure functions on bytes) -------------------------------------------
def size_after(day: date, records: Sequence[bytes], committed_day: date | None, committed_size: int) -> int:
    """The day file's size once ``Archive.write_records`` has appended ``records`` (pure: lets
    a writer record the new committed size before it writes)."""
    data = sum(map(len, records)) + len(SEP) * (len(records) - 1)
    if day == committed_day:
        return committed_size + len(SEP) + data
    return len(HEADER) + data + len(TAIL)


def make_record(user_id: str, chat_time: str, chat_type: str, content: bytes, seq: int) -> bytes:
    """One record as compact JSON bytes with SPEC's key order; ``seq`` last (see ``_seq_of``)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"seq must be a non-negative int, not {seq!r}")
    record = {"user_id": user_id, "chat_time": chat_time, "chat_type": chat_type,
              "content": base64.b64encode(content).decode("ascii"), "seq": seq}
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def parse_day(data: bytes) -> list[dict[str, Any]]:
    """The records of a DD.json, oldest first."""
    chat = json.loads(data)["chat"]
    if not isinstance(chat, list):
        raise ValueError("'chat' is not a list")
    return chat


def filter_after(data: bytes, after_seq: int) -> bytes | None:
    """A valid DD.json with only the records whose seq > ``after_seq``, or None if none is.

    Walks back from the end over whole lines and reads only each line's trailing ``"seq":N}``,
    so the cost follows the records returned, not the file (seqs ascend within a file).
    Files in another layout fall back to parsing.
    """
    bounds = _body(data)
    if bounds is None:
        kept = [r for r in parse_day(data) if r["seq"] > after_seq]
        lines = [json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() for r in kept]
        return HEADER + SEP.join(lines) + TAIL if kept else None
    start, end = bounds
    keep_from = pos = end
    while pos > start:
        sep = data.rfind(SEP, start, pos)
        line = start if sep < 0 else sep + len(SEP)
        if _seq_of(data[line:pos]) <= after_seq:
            break
        keep_from, pos = line, max(sep, start)
    if keep_from == end:
        return None
    return HEADER + data[keep_from:end] + TAIL


def cut_day(data: bytes, before_seq: int | None = None, budget: int | None = None) -> tuple[bytes | None, bool]:
    """The newest records of a DD.json with seq < ``before_seq`` whose lines fit in ``budget``
    bytes (always at least one, so that a single big record still travels), as a valid DD.json;
    and whether that is every record with seq < ``before_seq``. (None, True) when none is.
    Like ``filter_after`` it walks back over whole lines, reading only each line's seq."""
    bounds = _body(data)
    if bounds is None:
        data = HEADER + SEP.join(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode()
                                 for r in parse_day(data)) + TAIL
        bounds = _body(data)
        assert bounds is not None
    start, end = bounds

    def previous_line(pos: int) -> tuple[int, int]:
        """(start of the line ending at ``pos``, end of the line before it or -1)."""
        sep = data.rfind(SEP, start, pos)
        return (start, -1) if sep < 0 else (sep + len(SEP), sep)

    pos = end
    while pos > start and before_seq is not None:        # skip records at or after before_seq
        line, before = previous_line(pos)
        if _seq_of(data[line:pos]) < before_seq:
            break
        pos = before if before >= 0 else start
    if pos <= start:
        return None, True
    keep_to = keep_from = pos
    while True:
        line, before = previous_line(keep_from if keep_from == keep_to else keep_from - len(SEP))
        if budget is not None and keep_from != keep_to and keep_to - line > budget:
            return HEADER + data[keep_from:keep_to] + TAIL, False
        keep_from = line
        if before < 0:
            return HEADER + data[keep_from:keep_to] + TAIL, True


def last_seq_in(data: bytes) -> int | None:
    """The seq of the newest record of a DD.json, or None when it holds none."""
    bounds = _body(data)
    if bounds is None:
        chat = parse_day(data)
        return chat[-1]["seq"] if chat else None
    start, end = bounds
    if end == start:
        return None
    sep = data.rfind(SEP, start, end)
    return _seq_of(data[start if sep < 0 else sep + len(SEP):end])


def _seq_of(record: bytes) -> int:
    # Fast path for our own records: the object ends in ,"seq":N} so N is the last key's value
    # (the byte before the key must be ',' or '{', so it cannot sit inside another string).
    at = record.rfind(_SEQ_KEY)
    digits = record[at + len(_SEQ_KEY):-1]
    if at > 0 and record[at - 1:at] in (b",", b"{") and record.endswith(b"}") and digits.isdigit():
        return int(digits)
    return json.loads(record)["seq"]


def _body(data: bytes) -> tuple[int, int] | None:
    """(start, end) of the record lines when ``data`` is in this module's layout, else None."""
    if len(data) >= len(HEADER) + len(TAIL) and data.startswith(HEADER) and data.endswith(TAIL):
        return len(HEADER), len(data) - len(TAIL)
    return None


def _join(records: Sequence[bytes]) -> bytes:
    if not records:
        raise ValueError("no records to append")
    for record in records:
        # One record per line is what makes the O(1) append and filter_after work.
        if not (isinstance(record, bytes) and record.startswith(b"{") and record.endswith(b"}")
                and b"\n" not in record):
            raise ValueError("a record must be one line of JSON object bytes (see make_record)")
    return SEP.join(records)


# -- file helpers ---------------------------------------------------------------------------------
def _check_day(day: Any) -> None:
    # datetime is a date subclass but compares badly with dates and carries a time zone.
    if not isinstance(day, date) or isinstance(day, datetime):
        raise TypeError(f"day must be a datetime.date, not {type(day).__name__}")


def _check_size(size: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_FILE_SIZE:
        raise ValueError(f"committed size {size!r} is not a possible day file size")


def _day_path(room: Path, day: date) -> Path:
    return room / f"{day.year:04d}" / f"{day.month:02d}" / f"{day.day:02d}.json"


def _day_file(room: Path, day: date) -> str:
    """``_day_path`` as a string, for the append path (no pathlib parsing per batch)."""
    return f"{room}/{day.year:04d}/{day.month:02d}/{day.day:02d}.json"


def _numbered(directory: Path, pattern: re.Pattern[str], want_dir: bool) -> list[int]:
    """The numbers in the names of ``directory``'s folders (or files) that match ``pattern``."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [int(m.group(1)) for e in entries if (m := pattern.fullmatch(e.name))
            and (e.is_dir(follow_symlinks=False) if want_dir else e.is_file(follow_symlinks=False))]


def _scan_days(room: Path, after: date | None) -> list[date]:
    """Day files of a room, ascending; only those after ``after`` (pruning older folders)."""
    days = []
    for year in _numbered(room, _YEAR_RE, True):
        if after is not None and year < after.year:
            continue
        year_dir = room / f"{year:04d}"
        for month in _numbered(year_dir, _MONTH_RE, True):
            if after is not None and (year, month) < (after.year, after.month):
                continue
            for dd in _numbered(year_dir / f"{month:02d}", _DAY_FILE_RE, False):
                try:
                    day = date(year, month, dd)
                except ValueError:  # 02/30.json and the like are not day files
                    continue
                if after is None or day > after:
                    days.append(day)
    return sorted(days)


def _pwrite_all(fd: int, data: bytes, offset: int) -> int:
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(f"pwrite wrote {n} bytes")
        done += n
    return done


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(path: Path) -> list[Path]:
    """Create ``path`` and missing parents; return the folders that may be new, whose parents
    must be fsynced for the new entries to survive a power loss."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            pass  # created concurrently; still fsync its parent, it costs little
    return missing


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over ``path``, fsync the folder(s)."""
    created = _makedirs(path.parent)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            _pwrite_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for directory in sorted({path.parent} | {d.parent for d in created}):
        _fsync_dir(directory)

