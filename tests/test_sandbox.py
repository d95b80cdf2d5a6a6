"""The grading sandbox: what a kernel in it sees, and the pieces around it.

The whole pipeline under attack is tested in test_grading_isolation.py; here one kernel is
started directly with the sandbox's kernel manager, as nbgrader's Execute starts it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest
from conftest import requires_sandbox

from course_tools.grading import sandbox


def test_copy_out_copies_plain_files_and_never_a_link(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    (inside / "sub").mkdir(parents=True)
    (inside / "model.pt").write_bytes(b"weights")
    (inside / "sub" / "log.txt").write_text("log")
    (inside / "big.bin").write_bytes(b"x" * 100)
    (inside / "passwd").symlink_to("/etc/passwd")
    (inside / "linked_dir").symlink_to(tmp_path)
    outside.mkdir()
    (outside / "escape").symlink_to(tmp_path / "elsewhere")
    (inside / "escape").write_text("through a link")

    skipped = sandbox.copy_out(inside, outside, budget_bytes=50)

    assert (outside / "model.pt").read_bytes() == b"weights"
    assert (outside / "sub" / "log.txt").read_text() == "log"
    assert not (outside / "big.bin").exists()
    assert not (outside / "passwd").exists() and not (outside / "linked_dir").exists()
    assert not (tmp_path / "elsewhere").exists()  # not written through the link outside
    assert sorted(skipped) == [
        "big.bin (over the size left)",
        "escape (would replace something that is not a plain file)",
        "linked_dir (a link)",
        "passwd (not a plain file)",
    ]


def test_the_command_shares_nothing_it_need_not(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTOR_TOKEN", "secret")
    command = sandbox.sandbox_command(["python"], tmp_path / "work", tmp_path / "run", sandbox.Limits(memory_mb=1000))
    for option in (
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--clearenv",
        "--die-with-parent",
        "--new-session",
    ):
        assert option in command
    assert f"--as={1000 * 1024 * 1024}" in command and "--core=0" in command
    assert "secret" not in " ".join(command)
    assert str(Path.home()) not in [command[i + 1] for i, arg in enumerate(command) if arg in ("--bind", "--ro-bind")]
    writable = [command[i + 2] for i, arg in enumerate(command) if arg == "--bind"]
    assert writable == [str(tmp_path / "run")]


@pytest.mark.slow
@requires_sandbox
def test_a_kernel_in_the_sandbox_sees_only_its_own_world(tmp_path, monkeypatch):
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    (course / "solutions" / "answer.txt").write_text("42")
    work = course / "autograded" / "alice" / "ch03"
    work.mkdir(parents=True)
    (work / "data.txt").write_text("mine")
    (work / "ch03_exercises.ipynb").write_text("{}")  # the notebook being graded stays outside
    monkeypatch.setenv("INSTRUCTOR_TOKEN", "secret-token")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    code = f"""
import json, os, socket, subprocess
found = {{"cwd": os.getcwd(), "files": sorted(os.listdir(".")), "data": open("data.txt").read(),
         "token": os.environ.get("INSTRUCTOR_TOKEN"), "course": os.path.exists({str(course)!r}),
         "home": os.path.expanduser("~"), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}}
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    found["network"] = "connected"
except OSError as error:
    found["network"] = type(error).__name__
try:
    open({str(Path(sandbox.__file__))!r}, "a")
    found["package"] = "writable"
except OSError as error:
    found["package"] = type(error).__name__
open("result.txt", "w").write("from the kernel")
subprocess.Popen(["sleep", "300"], start_new_session=True)
print(json.dumps(found))
"""

    async def run() -> dict:
        manager = sandbox.SandboxedKernelManager(kernel_name="python3")
        await manager.start_kernel(cwd=str(work))
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=120)
            printed = []
            reply = await client.execute_interactive(
                code, timeout=120, output_hook=lambda msg: printed.append(msg["content"].get("text", ""))
            )
            assert reply["content"]["status"] == "ok", reply["content"]
            return json.loads("".join(printed))
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)

    try:
        found = asyncio.run(run())
    finally:
        server.close()
    assert found["cwd"] == "/home/student/ch03" and found["home"] == "/home/student"
    assert found["files"] == ["data.txt"] and found["data"] == "mine"
    assert found["token"] is None and found["course"] is False
    assert found["network"] == "ConnectionRefusedError"  # its own loopback: nobody listens there
    assert found["package"] in ("PermissionError", "OSError")
    assert max(found["pids"]) < 100  # a process namespace of its own
    assert (work / "result.txt").read_text() == "from the kernel"  # copied out
    leftovers = [p for p in os.popen("ps -eo args").read().splitlines() if p.strip() == "sleep 300"]
    assert leftovers == []
