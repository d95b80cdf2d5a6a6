"""The one download mechanism: checksums, atomic writes, offline errors that say what to do."""

import hashlib
import http.client
import io
import os
import stat
import time
import zipfile

import pytest

from reference_impl import download
from reference_impl.download import DataFileError, RemoteFile, fetch


@pytest.fixture
def fake_file(monkeypatch, tmp_path):
    """Register a small file with a known checksum, served by a fake network."""
    payload = b"hello, course\n"
    spec = RemoteFile("sub/hello.txt", "https://example.invalid/hello.txt", hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(download.FILES, "hello.txt", spec)
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    calls = []

    def fake_download(url):
        calls.append(url)
        return payload

    monkeypatch.setattr(download, "_download", fake_download)
    return tmp_path, payload, calls


def test_every_course_file_is_in_the_shared_cache_with_its_checksum(data_dir):
    for name in download.FILES:
        assert fetch(name).stat().st_size > 0


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path))
    assert download.cache_dir() == tmp_path
    monkeypatch.delenv(download.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.cache_dir() == tmp_path / "xdg" / "llm-course"


def test_downloads_once_then_reads_the_cache(fake_file):
    cache, payload, calls = fake_file
    path = fetch("hello.txt")
    assert path == cache / "sub" / "hello.txt"
    assert path.read_bytes() == payload
    assert fetch("hello.txt") == path
    assert calls == ["https://example.invalid/hello.txt"]
    # no temporary file is left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["hello.txt"]


def test_a_download_with_the_wrong_checksum_is_not_cached(fake_file, monkeypatch):
    cache, _, _ = fake_file
    monkeypatch.setattr(download, "_download", lambda url: b"tampered")
    with pytest.raises(DataFileError, match="has SHA-256"):
        fetch("hello.txt")
    assert not (cache / "sub" / "hello.txt").exists()


def test_a_corrupt_cached_file_is_reported_not_used(fake_file):
    cache, _, calls = fake_file
    (cache / "sub").mkdir()
    (cache / "sub" / "hello.txt").write_bytes(b"half a fi")
    with pytest.raises(DataFileError, match="corrupt"):
        fetch("hello.txt")
    assert calls == []


def test_offline_and_missing_names_the_file_url_and_remedy(fake_file, monkeypatch):
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with pytest.raises(DataFileError) as err:
        fetch("hello.txt")
    message = str(err.value)
    assert "'hello.txt'" in message
    assert "https://example.invalid/hello.txt" in message
    assert "LLM_COURSE_DATA" in message and "copy it to the path above" in message


def test_a_failed_download_says_how_to_provide_the_file(fake_file, monkeypatch):
    def no_network(url):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(download, "_download", no_network)
    with pytest.raises(DataFileError, match="Network is unreachable"):
        fetch("hello.txt")


def test_an_interrupted_write_leaves_no_file(fake_file, monkeypatch):
    cache, _, _ = fake_file

    def interrupted(fd, mode):
        raise KeyboardInterrupt

    monkeypatch.setattr(download.os, "fdopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch("hello.txt")
    assert list((cache / "sub").iterdir()) == []


def test_a_file_inside_a_zip_archive_is_extracted(monkeypatch, tmp_path):
    member = b"ham\thello\nspam\tWIN a prize\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme", "about")
        z.writestr("data.tsv", member)
    spec = RemoteFile("data.tsv", "https://example.invalid/a.zip", hashlib.sha256(member).hexdigest(), "data.tsv")
    monkeypatch.setitem(download.FILES, "data.tsv", spec)
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(download, "_download", lambda url: archive.getvalue())
    assert fetch("data.tsv").read_bytes() == member


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="the-verdict.txt"):
        fetch("the-verdikt.txt")


def test_the_story_is_the_real_one(verdict_text):
    assert len(verdict_text) == 20479
    assert verdict_text.startswith("I HAD always thought Jack Gisburn rather a cheap genius")


# --- writing files: permissions, durability, leftovers ---------------------------------------


def test_written_files_get_the_permissions_open_would_give_them(tmp_path):
    old = os.umask(0o022)
    try:
        with download.atomic_write(tmp_path / "shared.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.bin").stat().st_mode) == 0o644  # readable by a class, not 0600


def test_the_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(download.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(download.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b)))
    with download.atomic_write(tmp_path / "file.bin") as f:
        f.write(b"data")
    assert events == ["fsync", "replace"]


def test_temporary_files_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    stale = tmp_path / ".model.pth.abc123.part"
    fresh = tmp_path / ".model.pth.def456.part"  # a write going on right now in another process
    other = tmp_path / ".other.pth.abc123.part"  # another target's: not ours to judge
    for path in (stale, fresh, other):
        path.write_bytes(b"half a checkpoint")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(other, (two_hours_ago, two_hours_ago))
    with download.atomic_write(tmp_path / "model.pth") as f:
        f.write(b"whole")
    assert not stale.exists() and fresh.exists() and other.exists()
    assert (tmp_path / "model.pth").read_bytes() == b"whole"


def test_a_folder_where_the_file_belongs_is_named(fake_file):
    cache, _, _ = fake_file
    (cache / "sub" / "hello.txt").mkdir(parents=True)
    with pytest.raises(DataFileError, match=r"hello.txt is a folder"):
        fetch("hello.txt")


def test_a_cache_that_cannot_be_written_says_so_after_the_download(fake_file, monkeypatch):
    def read_only(target):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(download, "atomic_write", read_only)
    with pytest.raises(
        DataFileError, match=r"downloaded hello.txt but could not save it .*Read-only file system.*LLM_COURSE_DATA"
    ):
        fetch("hello.txt")


def test_a_download_cut_short_is_a_data_file_error(fake_file, monkeypatch):
    def cut(url):
        raise http.client.IncompleteRead(b"hel", 11)

    monkeypatch.setattr(download, "_download", cut)
    with pytest.raises(DataFileError, match=r"the download failed: IncompleteRead"):
        fetch("hello.txt")


def test_a_broken_zip_archive_is_a_data_file_error(monkeypatch, tmp_path):
    spec = RemoteFile("x/member.txt", "https://example.invalid/a.zip", "0" * 64, zip_member="member.txt")
    monkeypatch.setitem(download.FILES, "member.txt", spec)
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(download, "_download", lambda url: b"<html>not a zip</html>")
    with pytest.raises(DataFileError, match=r"not the expected zip archive"):
        fetch("member.txt")
    assert not (tmp_path / "x" / "member.txt").exists()
