"""The one download mechanism: checksums, atomic writes, offline errors that say what to do."""

import hashlib
import io
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
