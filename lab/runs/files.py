"""The run format's file names (defined once), atomic writes and bounded, non-blocking reads.

Everything that touches a file of a run directory goes through here: writers get a temp file
in the same folder renamed into place (mode as a plain ``open`` gives it: ``0o666 & ~umask``);
readers open only regular files (a FIFO, socket, device or directory in a file's place is
named as a problem, never opened or waited on) and read at most a fixed number of bytes.

>>> step_file(Path("runs/r/samples"), 5)
PosixPath('runs/r/samples/step_000005.parquet')
>>> step_of(Path("runs/r/samples/step_000005.parquet")), step_of(Path("checkpoints/step_000010")), step_of(Path("x.parquet"))
(5, 10, None)
"""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
from pathlib import Path
from typing import IO, Any

from lab.errors import UsageError

# --- the format's names ----------------------------------------------------------------------
FORMAT_VERSION = 1
"""Version of the run-directory format this lab writes (0 = written before versioning)."""
CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
PROVENANCE_FILE = "provenance.json"
REFERENCE_FILE = "reference.parquet"
"""Reference samples of the run's starting policy (``RunWriter.write_reference``)."""
LOCK_NAME = "writer.lock"
SAMPLES_DIR = "samples"
PROBES_DIR = "probes"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest.json"
TRAIN_CONFIG_FILE = "train_config.json"
"""In each checkpoint folder: the run's TrainConfig when the checkpoint was written (resume compares
the run's config.json with it). Not ``config.json``: that name holds the model's own Hugging Face
config, so a checkpoint folder stays loadable as a model."""
"""``checkpoints/latest.json``: the newest complete checkpoint."""
RUN_MARKERS = (CONFIG_FILE, STATUS_FILE, METRICS_FILE)
"""A folder holding any of these (in any form) is a run directory."""
STEP_PREFIX = "step_"
STEP_DIGITS = 6

# --- read limits -------------------------------------------------------------------------------
SMALL_FILE_MAX_BYTES = 1 << 20
"""Largest config.json / status.json / provenance.json / latest.json a reader reads (1 MiB)."""
METRICS_MAX_BYTES = 256 << 20
"""Most of metrics.jsonl a full read reads (256 MiB: ~100,000 steps at the ~2.5 kB a step a run writes)."""
LINE_MAX_BYTES = 1 << 20
"""Longest metrics.jsonl line a reader keeps (1 MiB); a longer one is skipped and named."""
TAIL_MAX_BYTES = 8 << 20
"""Most of the end of metrics.jsonl that the cheap readers (listing, last step) read."""


class RunReadError(UsageError):
    """Nothing usable could be read from a run directory; the message names the file(s)."""


class NotARunError(RunReadError, FileNotFoundError):
    """The path holds no run files at all (no config.json, status.json or metrics.jsonl)."""


class RunRootError(RunReadError, FileNotFoundError):
    """A runs root that does not exist or is not a folder (``list_runs(..., missing_ok=False)``)."""


class RunPathError(UsageError):
    """A run name that is absolute, has ``..`` or resolves outside its root."""


class RunLockedError(UsageError):
    """Another live process is writing this run directory."""


class RunExistsError(UsageError, FileExistsError):
    """The run directory already holds a run (``create`` never overwrites one)."""


def step_name(step: int) -> str:
    """``step_000005``: the stem of a step's Parquet file and the name of its checkpoint folder."""
    return f"{STEP_PREFIX}{int(step):0{STEP_DIGITS}d}"


def step_file(folder: Path, step: int) -> Path:
    """``folder/step_000005.parquet``: a step's samples or probes file."""
    return Path(folder) / f"{step_name(step)}.parquet"


def step_of(path: Path) -> int | None:
    """The step in a ``step_XXXXXX[.parquet]`` name, or None when the name has none."""
    stem = Path(path).name.split(".", 1)[0]
    if not stem.startswith(STEP_PREFIX):
        return None
    digits = stem[len(STEP_PREFIX):]
    return int(digits) if digits.isdigit() else None


def steps_in(folder: Path) -> list[int]:
    """Steps that have a ``step_*.parquet`` file in ``folder`` (sorted; [] when it is no folder)."""
    return sorted(s for s in (step_of(f) for f in Path(folder).glob(f"{STEP_PREFIX}*.parquet")) if s is not None)


# --- writing -------------------------------------------------------------------------------------
def _temp_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new temp file in ``path``'s folder, created like ``open(..., "x")`` would:
    mode ``0o666 & ~umask`` (``mkstemp`` would give 0600, unreadable to a shared dashboard)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temp file name")  # pragma: no cover


def _replace_from_temp(path: Path, write) -> None:
    """``write(fd, tmp)`` fills a temp file beside ``path``, which is then renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    try:
        write(fd, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and ``os.replace``."""
    def write(fd, tmp):
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    _replace_from_temp(path, write)


def atomic_write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (sorted keys, non-finite floats as null), written atomically."""
    atomic_write_bytes(path, (json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n").encode())


def write_parquet(path: Path, df) -> None:
    """``df`` as a Parquet file (no index), written atomically."""
    def write(fd, tmp):
        os.close(fd)
        df.to_parquet(tmp, index=False)

    _replace_from_temp(path, write)


def jsonable(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (JSON has no NaN), tuples become lists.

    >>> jsonable({"a": float("nan"), "b": (1, 2.5)})
    {'a': None, 'b': [1, 2.5]}
    """
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return jsonable(x.item())
    return x


def json_line(record: dict) -> str:
    """``record`` as one line of metrics.jsonl (JSON-safe values, sorted keys)."""
    return json.dumps(jsonable(record), sort_keys=True) + "\n"


def append_line(path: Path, line: str) -> None:
    """Append one line and fsync (a crash can tear only this last line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


# --- reading: only regular files, never blocking, never without limit -------------------------------
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_regular(path: Path, label: str) -> str | None:
    """Why ``path`` (which exists in some form) is not a readable regular file, or None when it is one.

    A symlink is followed; a dangling one, or one to a device, FIFO or folder, is named.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{label}: a symlink to nothing" if os.path.islink(path) else f"{label}: missing"
    except OSError as e:
        return f"{label}: cannot read ({e.strerror or e})"
    if stat.S_ISREG(st.st_mode):
        return None
    via = " (through a symlink)" if os.path.islink(path) else ""
    return f"{label}: is {_kind(st.st_mode)}{via}, not a regular file; replace it with the run's file or remove it"


def open_regular(path: Path, label: str) -> tuple[IO[bytes] | None, str | None]:
    """(binary file, None) for a regular file; (None, None) when nothing is there; (None, problem) else.

    Checks the kind before opening (so a device is never opened) and opens with ``O_NONBLOCK``
    (so a file swapped for a FIFO in between cannot block either), then checks again.
    """
    if not os.path.lexists(path):
        return None, None
    prob = not_regular(path, label)
    if prob:
        return None, prob
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"{label}: cannot read ({e.strerror or e})"
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None, f"{label}: is {_kind(st.st_mode)}, not a regular file; replace it with the run's file or remove it"
    return os.fdopen(fd, "rb"), None


def _size(n: int) -> str:
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} bytes"


def read_small(path: Path, label: str, max_bytes: int | None = None) -> tuple[bytes | None, str | None]:
    """(bytes, None), (None, "label: missing") or (None, "label: reason") for a small file, read
    only when it is a regular file of at most ``max_bytes`` (:data:`SMALL_FILE_MAX_BYTES`)."""
    cap = SMALL_FILE_MAX_BYTES if max_bytes is None else max_bytes
    f, prob = open_regular(path, label)
    if f is None:
        return None, prob or f"{label}: missing"
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                return None, f"{label}: {_size(size)}, more than the {_size(cap)} a run's small file may hold; not read"
            data = f.read(cap + 1)
        except OSError as e:
            return None, f"{label}: cannot read ({e.strerror or e})"
    if len(data) > cap:
        return None, f"{label}: more than the {_size(cap)} a run's small file may hold; not read"
    return data, None


def read_json(path: Path, label: str | None = None) -> tuple[Any, str | None]:
    """(value, None) or (None, "label: reason") for a small JSON file (see :func:`read_small`)."""
    label = label or Path(path).name
    data, prob = read_small(path, label)
    if prob:
        return None, prob
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"{label}: not valid UTF-8"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"{label}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})"
    except RecursionError:
        return None, f"{label}: nested too deeply to read"


def _parse_line(raw: bytes) -> tuple[Any, str | None]:
    """(record, None) or (None, what is wrong with the line)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "is not valid UTF-8"
    try:
        rec = json.loads(text)
    except json.JSONDecodeError:
        return None, "is not valid JSON"
    except RecursionError:
        return None, "is nested too deeply"
    if not isinstance(rec, dict):
        return None, "is not a JSON object"
    return rec, None


class JsonlScan:
    """What :func:`scan_jsonl` found: the records, the problems, and whether the last line was torn."""

    __slots__ = ("records", "problems", "torn", "exists", "size")

    def __init__(self, records, problems, torn=False, exists=False, size=0):
        self.records, self.problems, self.torn, self.exists, self.size = records, problems, torn, exists, size


def scan_jsonl(path: Path, label: str | None = None, *, max_bytes: int | None = None) -> JsonlScan:
    """Every JSON-object line of a JSONL file, never raising for content, in bounded memory.

    Reads at most ``max_bytes`` (:data:`METRICS_MAX_BYTES`) in chunks; a line longer than
    :data:`LINE_MAX_BYTES` is skipped unread. A last line without its newline that does not
    parse is *torn* (``torn=True``, not in ``problems``: the caller decides, e.g. by the run's
    status); every other line that is not UTF-8, not JSON or not an object is named in
    ``problems`` (``"metrics.jsonl: line 2 is not valid JSON"``), as is the file itself when it is
    not a regular file or is larger than the limit.
    """
    label = label or Path(path).name
    cap = METRICS_MAX_BYTES if max_bytes is None else max_bytes
    f, prob = open_regular(path, label)
    if f is None:
        return JsonlScan([], [prob] if prob else [], exists=prob is not None)
    records: list[dict] = []
    problems: list[str] = []
    lineno, buf, skipping, read = 0, b"", False, 0
    torn = False
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                problems.append(f"{label}: {_size(size)}, more than the {_size(cap)} a reader reads; "
                                f"only the first {_size(cap)} are read")
            while read < cap:
                chunk = f.read(min(1 << 20, cap - read))
                if not chunk:
                    break
                read += len(chunk)
                pos = 0
                while True:
                    nl = chunk.find(b"\n", pos)
                    if nl < 0:  # the line goes on in the next chunk
                        if not skipping:
                            buf += chunk[pos:]
                            if len(buf) > LINE_MAX_BYTES:
                                lineno += 1
                                problems.append(f"{label}: line {lineno} is longer than {_size(LINE_MAX_BYTES)}; skipped")
                                buf, skipping = b"", True
                        break
                    if skipping:  # the end of a line too long to keep
                        skipping = False
                    else:
                        lineno += 1
                        line, buf = buf + chunk[pos:nl], b""
                        if line.strip():
                            rec, why = _parse_line(line)
                            if why:
                                problems.append(f"{label}: line {lineno} {why}")
                            else:
                                records.append(rec)
                    pos = nl + 1
        except OSError as e:
            problems.append(f"{label}: cannot read ({e.strerror or e})")
            return JsonlScan(records, problems, exists=True)
    if buf.strip() and not skipping and size <= cap:  # no final newline: complete, or torn by a killed writer
        rec, why = _parse_line(buf)
        if why:
            torn = True
        else:
            records.append(rec)
    return JsonlScan(records, problems, torn=torn, exists=True, size=size)


def tail_records(path: Path, want: tuple[str, ...] = ()) -> dict:
    """The last complete record of a JSONL file, plus the last value of each ``want`` key found
    further back (``{"step": ..., ..., "eval/accuracy": ...}``); reads at most
    :data:`TAIL_MAX_BYTES` of its end, and nothing of a file that is not a regular file."""
    f, _ = open_regular(path, Path(path).name)
    if f is None:
        return {}
    out: dict = {}
    last = None
    with f:
        try:
            size = f.seek(0, os.SEEK_END)
        except OSError:
            return {}
        data, start, chunk = b"", size, 1 << 16  # data = the file from ``start`` to its end
        while True:
            new_start = max(0, size - chunk)
            try:
                f.seek(new_start)
                data = f.read(start - new_start) + data  # only the part not read yet
            except OSError:
                return {}
            start = new_start
            lines = data.split(b"\n")
            if start > 0:
                lines = lines[1:]  # first piece may be cut
            missing = set(want)
            last, out = None, {}
            for raw in reversed(lines):
                if not raw.strip() or len(raw) > LINE_MAX_BYTES:
                    continue
                rec, why = _parse_line(raw)
                if why:
                    continue
                if last is None:
                    last = rec
                for k in list(missing):
                    if rec.get(k) is not None:
                        out.setdefault(k, rec[k])
                        missing.discard(k)
                if not missing:
                    break
            if (last is not None and not missing) or start == 0 or chunk >= TAIL_MAX_BYTES:
                break
            chunk = min(chunk * 8, TAIL_MAX_BYTES)
    if last is None:
        return {}
    return {**last, **{k: v for k, v in out.items() if k in want}}


def mtime(f: Path) -> float | None:
    """Modification time of ``f`` (without opening it), or None."""
    try:
        return os.stat(f).st_mtime
    except OSError:
        return None


def as_int(v: Any, default: int) -> int:
    """``v`` when it is an int (not a bool), else ``default``."""
    return v if isinstance(v, int) and not isinstance(v, bool) else default
