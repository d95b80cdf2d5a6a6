"""One way to get the course's data files: download once, check the SHA-256, cache.

Every data set and tokenizer file the course uses is listed in ``FILES`` with its
original URL and checksum. ``fetch(name)`` returns the path of the cached file,
downloading it first when it is missing and the machine is online.

The cache folder is ``$LLM_COURSE_DATA`` when that is set (point it at a folder
that already holds the files, e.g. ``../shared/data`` on an offline machine),
else ``$XDG_CACHE_HOME/llm-course`` (``~/.cache/llm-course``). A read-only cache
works: files are only ever read from it once they are there.

Set ``LLM_COURSE_OFFLINE=1`` to forbid any network access (the tests do).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import io
import os
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CACHE_ENV = "LLM_COURSE_DATA"
OFFLINE_ENV = "LLM_COURSE_OFFLINE"

_GPT2_ENCODINGS = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
_BOOK_REPO = "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/"
_SMS_ZIP = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"


@dataclass(frozen=True)
class RemoteFile:
    """A file of the course: where it lives in the cache, where it comes from, its checksum."""

    path: str  # relative to the cache folder
    url: str
    sha256: str
    zip_member: str | None = None  # the URL is a zip archive holding the file under this name


FILES: dict[str, RemoteFile] = {
    "the-verdict.txt": RemoteFile(
        "the-verdict.txt",
        _BOOK_REPO + "ch02/01_main-chapter-code/the-verdict.txt",
        "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
    ),
    "instruction-data.json": RemoteFile(
        "instruction-data.json",
        _BOOK_REPO + "ch07/01_main-chapter-code/instruction-data.json",
        "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
    ),
    "SMSSpamCollection": RemoteFile(
        "sms_spam_collection/SMSSpamCollection",
        _SMS_ZIP,
        "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
        zip_member="SMSSpamCollection",
    ),
    # GPT-2's BPE files, stored under the names tiktoken gives its cache entries (the
    # SHA-1 of the URL), so that our tokenizer and tiktoken share one copy.
    "gpt2/vocab.bpe": RemoteFile(
        "tiktoken_cache/6d1cbeee0f20b3d9449abfede4726ed8212e3aee",
        _GPT2_ENCODINGS + "vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
    "gpt2/encoder.json": RemoteFile(
        "tiktoken_cache/6c7ea1a7e38e3a7f062df639a5b80947f075ffe6",
        _GPT2_ENCODINGS + "encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
}


class DataFileError(RuntimeError):
    """A course file is missing and cannot be downloaded, or its contents are wrong."""


def cache_dir() -> Path:
    """The folder the course reads its data files from (and downloads them into)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm-course"


def is_offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").lower() in {"1", "true", "yes"}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str) -> Path:
    """Return the local path of the course file ``name``, downloading it if needed.

    Raises ``DataFileError`` when the file is missing and cannot be downloaded (offline,
    or no network), or when the cached copy does not have the expected SHA-256.
    """
    if name not in FILES:
        raise KeyError(f"unknown course file {name!r}; known files: {', '.join(sorted(FILES))}")
    spec = FILES[name]
    target = cache_dir() / spec.path
    if target.is_dir():
        raise DataFileError(f"{target} is a folder, but the course file {name!r} should be there: move it away")
    if target.exists():
        actual = sha256_of(target)
        if actual != spec.sha256:
            raise DataFileError(
                f"{target} is corrupt: its SHA-256 is {actual}, expected {spec.sha256}. "
                f"Delete it and run again to download it afresh from {spec.url}."
            )
        return target
    if is_offline():
        raise DataFileError(_missing_message(name, spec, target, f"{OFFLINE_ENV} is set"))
    try:
        payload = _download(spec.url)
    except (OSError, http.client.HTTPException) as err:  # URLError is an OSError; IncompleteRead is not
        why = f"the download failed: {type(err).__name__}: {err}"
        raise DataFileError(_missing_message(name, spec, target, why)) from err
    if spec.zip_member is not None:
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                payload = archive.read(spec.zip_member)
        except (zipfile.BadZipFile, KeyError) as err:
            raise DataFileError(
                f"the download of {name} from {spec.url} is not the expected zip archive ({err}); "
                "nothing was written to the cache. Try again later, or provide the file by hand:\n"
                + _missing_message(name, spec, target, "the archive is broken")
            ) from None
    actual = hashlib.sha256(payload).hexdigest()
    if actual != spec.sha256:
        raise DataFileError(
            f"the download of {name} from {spec.url} has SHA-256 {actual}, expected {spec.sha256}; "
            "nothing was written to the cache."
        )
    try:
        with atomic_write(target) as f:
            f.write(payload)
    except OSError as err:
        raise DataFileError(
            f"downloaded {name} but could not save it to {target} ({type(err).__name__}: {err.strerror or err}); "
            f"point {CACHE_ENV} at a folder you can write to"
        ) from None
    return target


def _download(url: str) -> bytes:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        chunks = []
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1]) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                chunks.append(chunk)
                bar.update(len(chunk))
    return b"".join(chunks)


@contextlib.contextmanager
def atomic_write(target: Path) -> Iterator[BinaryIO]:
    """Open a binary file that appears at ``target`` only once it is completely written.

    It writes to a temporary file in the same folder, flushes it to the disk, then renames
    it: an interrupted download or save never leaves a half-written (or, after a crash, an
    empty) file under the final name, and an older file at ``target`` stays intact until the
    new one is complete. The file gets the permissions ``open()`` would give it (the umask's),
    so a cache or checkpoint shared with a class stays readable. Temporary files left by
    writes that were killed are removed by the next write to the same target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PART_SUFFIX)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; open() would honour the umask
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


PART_SUFFIX = ".part"
STALE_AFTER_S = 3600.0  # a temporary file this old belongs to a write that died


def _remove_stale_parts(target: Path) -> None:
    """Delete temporary files of earlier writes to ``target`` that were killed.

    Only files named like ours for this very target, and untouched for an hour: a write that
    is still going on (another process saving the same file right now) is left alone.
    """
    now = time.time()
    for part in target.parent.glob(f".{glob.escape(target.name)}.*{PART_SUFFIX}"):
        try:
            if now - part.stat().st_mtime > STALE_AFTER_S:
                part.unlink()
        except OSError:  # gone already, or not ours to delete
            pass


def _umask() -> int:
    """The process's umask. Linux shows it in /proc; elsewhere it is read by setting it (and
    putting it back), which is not safe while other threads create files."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _missing_message(name: str, spec: RemoteFile, target: Path, why: str) -> str:
    how = f" (it is the member {spec.zip_member!r} of that zip archive)" if spec.zip_member else ""
    return (
        f"course file {name!r} is not in the cache and cannot be downloaded ({why}).\n"
        f"  expected at: {target}\n"
        f"  original:    {spec.url}{how}\n"
        f"  sha256:      {spec.sha256}\n"
        f"To provide it: download it on a machine with internet, copy it to the path above, "
        f"or set {CACHE_ENV} to a folder that holds the course files (e.g. ../shared/data)."
    )


def use_tiktoken_cache() -> None:
    """Make tiktoken read GPT-2's encoding from the course cache (offline-safe).

    Only sets ``TIKTOKEN_CACHE_DIR`` when it is not set already, and fetches the
    files first so that a missing file gives our clear error instead of tiktoken's.
    """
    for name in ("gpt2/vocab.bpe", "gpt2/encoder.json"):
        fetch(name)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache_dir() / "tiktoken_cache"))


def read_text(name: str) -> str:
    """The contents of a course text file, as UTF-8."""
    return fetch(name).read_text(encoding="utf-8")
