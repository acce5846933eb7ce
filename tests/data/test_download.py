"""download() and extract(): against a loopback HTTP server, file:// URLs and hand-made archives."""

import hashlib
import io
import os
import socket
import tarfile

import pytest

from wsolbench.data.download import download, extract
from wsolbench.errors import WsolbenchError

PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_writes_file_and_returns_its_sha256(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    assert download(server.url + "/a.bin", dest, PAYLOAD_SHA, progress=False) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()


def test_existing_file_with_right_checksum_is_not_downloaded_again(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    download(server.url + "/a.bin", dest, PAYLOAD_SHA, progress=False)
    download(server.url + "/a.bin", dest, PAYLOAD_SHA, progress=False)
    assert server.count("/a.bin") == 1


def test_partial_download_is_resumed_with_a_range_request(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:100_000])
    assert download(server.url + "/a.bin", dest, PAYLOAD_SHA, progress=False) == PAYLOAD_SHA
    assert server.requests == [("/a.bin", "bytes=100000-")]
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.ignore_range.add("/a.bin")
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"x" * 5000)  # would corrupt the file if appended to
    assert download(server.url + "/a.bin", dest, None, progress=False) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_answered_with_416_is_fetched_again(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD + b"extra")
    assert download(server.url + "/a.bin", tmp_path / "a.bin", PAYLOAD_SHA, progress=False) == PAYLOAD_SHA
    assert [r for _, r in server.requests] == ["bytes=300005-", None]


def test_truncated_transfer_is_an_error_and_the_rerun_resumes(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.truncate["/a.bin"] = 1000
    dest = tmp_path / "a.bin"
    url = server.url + "/a.bin"
    with pytest.raises(WsolbenchError, match="truncated: got 1000 of 300000 bytes") as error:
        download(url, dest, PAYLOAD_SHA, progress=False)
    message = str(error.value)
    assert url in message and str(dest) in message and "\n" not in message
    assert not dest.exists()
    assert (tmp_path / "a.bin.part").read_bytes() == PAYLOAD[:1000]

    del server.truncate["/a.bin"]
    assert download(url, dest, PAYLOAD_SHA, progress=False) == PAYLOAD_SHA
    assert server.requests[-1] == ("/a.bin", "bytes=1000-")
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_is_an_error_and_removes_the_file(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(WsolbenchError, match="checksum mismatch") as error:
        download(server.url + "/a.bin", dest, wrong, progress=False)
    assert server.url + "/a.bin" in str(error.value) and wrong in str(error.value) and PAYLOAD_SHA in str(error.value)
    assert not dest.exists() and not (tmp_path / "a.bin.part").exists()


def test_http_error_names_url_and_file(server, tmp_path):
    dest = tmp_path / "missing.bin"
    with pytest.raises(WsolbenchError, match="HTTP 404") as error:
        download(server.url + "/missing.bin", dest, progress=False)
    assert server.url + "/missing.bin" in str(error.value) and str(dest) in str(error.value)
    assert not dest.exists()


def test_unreachable_host_names_url_and_file(tmp_path):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.bin"
    with pytest.raises(WsolbenchError, match="cannot download") as error:
        download(url, tmp_path / "a.bin", progress=False, timeout=5)
    assert url in str(error.value) and str(tmp_path / "a.bin") in str(error.value)


def test_file_url(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "a.bin"
    assert download(source.as_uri(), dest, PAYLOAD_SHA, progress=False) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD


def test_file_url_with_partial_restarts(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"x" * 10)
    assert download(source.as_uri(), dest, PAYLOAD_SHA, progress=False) == PAYLOAD_SHA


# --- extract ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, mode", [("a.tgz", "w:gz"), ("a.tar.gz", "w:gz"), ("a.tar", "w")])
def test_extract_tar_and_skip_on_rerun(tmp_path, fakes, name, mode):
    archive = tmp_path / name
    archive.write_bytes(fakes.tar({"top/x.txt": b"x", "top/sub/y.txt": b"yy"}, mode))
    out = extract(archive, tmp_path / "out")
    assert (out / "top" / "x.txt").read_bytes() == b"x"
    assert (out / "top" / "sub" / "y.txt").read_bytes() == b"yy"
    (out / "top" / "x.txt").write_bytes(b"changed")
    extract(archive, tmp_path / "out")  # marker present: nothing is unpacked again
    assert (out / "top" / "x.txt").read_bytes() == b"changed"


def test_extract_zip(tmp_path, fakes):
    archive = tmp_path / "a.zip"
    archive.write_bytes(fakes.zip({"top/x.txt": b"x", "top/sub/y.txt": b"yy"}))
    out = extract(archive, tmp_path / "out")
    assert (out / "top" / "sub" / "y.txt").read_bytes() == b"yy"


def test_extract_refuses_tar_member_escaping(tmp_path, fakes):
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(fakes.tar({"ok.txt": b"ok", "../evil.txt": b"evil"}))
    with pytest.raises(WsolbenchError, match="refusing to extract .*'../evil.txt'"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "out").glob(".extracted-*"))


def test_extract_refuses_symlink_out_of_destination(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc"
        tar.addfile(link)
    archive = tmp_path / "evil.tar"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(WsolbenchError, match="refusing to extract"):
        extract(archive, tmp_path / "out")
    assert not os.path.lexists(tmp_path / "out" / "link")


def test_extract_refuses_zip_member_escaping(tmp_path, fakes):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(fakes.zip({"../evil.txt": b"evil"}))
    with pytest.raises(WsolbenchError, match="refusing to extract"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_extract_corrupt_archive_is_one_line_error(tmp_path):
    archive = tmp_path / "bad.tgz"
    archive.write_bytes(b"this is an HTML page, not a tarball")
    with pytest.raises(WsolbenchError, match=f"cannot extract {archive}"):
        extract(archive, tmp_path / "out")
