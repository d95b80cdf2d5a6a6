"""The sandbox each student's kernel runs in while it is graded (Linux, bubblewrap).

nbgrader runs a student's notebook in a Jupyter kernel: a process that executes whatever
the notebook says, with the rights of whoever grades. ``SandboxedKernelManager`` starts
that kernel inside ``bwrap`` (Debian's ``bubblewrap``, the sandbox of Flatpak), so that
the kernel sees:

* the system (``/usr``), the Python environment and the course's two packages
  (``reference_impl``, ``course_tools``) and data files, all **read-only**;
* no course folder: no gradebook, no ``solutions/``, no other student's submission, no
  ``autograded/`` or ``feedback/``; no ``$HOME`` of the grader, a minimal environment
  (none of the grader's variables: tokens stay outside);
* a writable home of its own (``/home/student``, a size-capped ``tmpfs``) holding a copy
  of the student's own submitted files; the notebook runs in ``/home/student/<chNN>``, and
  what it writes there is copied out into ``autograded/<student>/<chNN>/`` afterwards
  (plain files only, never links);
* no network (a network namespace of its own: nbgrader talks to it over Unix sockets,
  ZeroMQ's ``ipc`` transport, in a folder bound into the sandbox), its own process
  namespace (when the kernel goes, every process it started goes with it: nothing
  survives the grading), its own IPC and host name;
* limits on address space (memory), CPU time, file size, open files and processes
  (``setrlimit``, inherited by everything the kernel starts). A grader running as root runs
  each kernel as a user id of its own (``kernel_uid``), so that the process limit holds and
  counts that kernel alone (root is exempt from it; a shared ``nobody`` would let one
  student's fork bomb starve the kernel graded beside it).

Nothing here depends on the notebook: any kernel started by this manager is sandboxed,
also by a hand-run ``nbgrader autograde`` (``nbgrader_config.py`` names the course's
``GuardedExecute``, which uses this manager). ``enabled = False`` (``python -m
course_tools.grading autograde --unsafe-no-sandbox``) runs the kernel unsandboxed, as
nbgrader does, and the report says so.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Int, Unicode

STUDENT_HOME = "/home/student"
STAGE = "/run/submission"  # the student's files, read-only, copied into the home at start
FIRST_KERNEL_UID = 200_000  # + the grading process's pid: unique among the kernels running at once
PACKAGES = ("reference_impl", "course_tools")
# Files of /etc a Python program may read (libraries' configuration, time zone, users): the
# rest of /etc stays outside.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "alternatives",
    "ssl",
    "ca-certificates",
    "nsswitch.conf",
    "host.conf",
    "hosts",
    "mime.types",
    "fonts",
    "passwd",
    "group",
    "os-release",
)
# Variables the kernel gets from the grader's environment (the course's own settings); every
# other variable is left out.
PASSED_VARIABLES = ("LANG", "LC_ALL", "TZ", "TIKTOKEN_CACHE_DIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt install bubblewrap`; Fedora: `sudo dnf install bubblewrap`), "
    "or grade in a Linux container or virtual machine that has it (see the instructor guide); "
    "--unsafe-no-sandbox grades without it, with the students' code running with your rights"
)


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot start here: the message says why and how to get it."""


@dataclass(frozen=True)
class Limits:
    """What one student's kernel may use (every process it starts has the same limits)."""

    memory_mb: int = 4096  # address space of each process
    cpu_seconds: int = 1800  # CPU time of each process
    file_mb: int = 256  # the largest file it may write
    disk_mb: int = 512  # its home (the working folder) and /tmp, each
    open_files: int = 512
    processes: int = 256  # processes and threads

    def rlimits(self, extra_processes: int = 0) -> list[str]:
        """``prlimit`` options for these limits (``extra_processes``: tasks the same user
        already runs, which the process limit counts too)."""
        mib = 1024 * 1024
        return [
            f"--as={self.memory_mb * mib}",
            f"--cpu={self.cpu_seconds}",
            f"--fsize={self.file_mb * mib}",
            f"--nofile={self.open_files}",
            f"--nproc={self.processes + extra_processes}",
            "--core=0",
        ]


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


_CHECKED: dict[tuple, str | None] = {}


def check_available() -> None:
    """Raise ``SandboxUnavailable`` (with how to install it) unless a sandbox starts here.
    Tried once per process: a trivial command in the same kind of sandbox as a kernel's."""
    key = (bwrap_path(), os.geteuid())
    if key not in _CHECKED:
        _CHECKED[key] = _probe()
    if _CHECKED[key] is not None:
        raise SandboxUnavailable(_CHECKED[key])


def _probe() -> str | None:
    if sys.platform != "linux":
        return f"the grading sandbox needs Linux (this is {sys.platform}): {INSTALL_HINT}"
    if bwrap_path() is None:
        return f"the grading sandbox needs bubblewrap (the `bwrap` command), which is not installed: {INSTALL_HINT}"
    if shutil.which("prlimit") is None:
        return "the grading sandbox needs `prlimit` (util-linux), which is not installed"
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as scratch:
        os.chmod(scratch, 0o755)  # readable by the sandbox's user
        command = sandbox_command(["/bin/true"], work=Path(scratch), run_dir=Path(scratch), limits=Limits())
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=_minimal_env())
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"the grading sandbox could not start ({error}): {INSTALL_HINT}"
    if result.returncode != 0:
        message = " ".join(result.stderr.split())[:300] or f"exit status {result.returncode}"
        hint = ""
        if "namespace" in message or "not permitted" in message:
            hint = (
                "; unprivileged user namespaces may be switched off (sysctl kernel.unprivileged_userns_clone=1, "
                "or on Ubuntu 24.04+ an AppArmor profile that allows bwrap)"
            )
        return f"the grading sandbox could not start: bwrap said: {message}{hint}; {INSTALL_HINT}"
    return None


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------


def readable_paths() -> list[Path]:
    """What the kernel may read besides the system: the Python installation and environment,
    the course's packages, the course's data files."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            paths.update(Path(location) for location in spec.submodule_search_locations)
    for variable in ("LLM_COURSE_DATA", "TIKTOKEN_CACHE_DIR"):
        if os.environ.get(variable):
            paths.add(Path(os.environ[variable]))
    if not os.environ.get("LLM_COURSE_DATA"):
        paths.add(Path.home() / ".cache" / "llm-course")  # reference_impl.download's default cache
    resolved = {Path(os.path.realpath(path)) for path in paths if path.exists()}
    resolved |= {path for path in paths if path.exists()}  # also where links point from
    return sorted(resolved)


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def kernel_env(workdir: str) -> dict[str, str]:
    """The kernel's whole environment: nothing of the grader's but the course's settings."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": STUDENT_HOME,
        "USER": "student",
        "PWD": workdir,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # no network in the sandbox: the libraries should not try
        "LLM_COURSE_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": "/tmp/huggingface",
    }
    data = os.environ.get("LLM_COURSE_DATA") or str(Path.home() / ".cache" / "llm-course")
    env["LLM_COURSE_DATA"] = data
    for name in PASSED_VARIABLES:
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def sandbox_command(
    command: list[str],
    work: Path,
    run_dir: Path,
    limits: Limits,
    assignment: str = "work",
    env: dict[str, str] | None = None,
    uid: int | None = None,
) -> list[str]:
    """``command`` wrapped in the sandbox: limits, then bwrap.

    ``work``: the student's files, copied into the home before ``command`` starts;
    ``run_dir``: a folder bound writable at the same path (the kernel's connection file and
    sockets); ``uid``: the user the kernel runs as when the grader is root (default:
    ``kernel_uid()``)."""
    workdir = f"{STUDENT_HOME}/{assignment}"
    env = kernel_env(workdir) if env is None else env
    root = os.geteuid() == 0
    mib = 1024 * 1024
    args = [
        "bwrap",
        "--die-with-parent",  # the grader gone (killed, crashed): the sandbox goes too
        "--new-session",  # no access to the grader's terminal
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "grading",
        "--clearenv",
        *_system_binds(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        # size-capped, and writable by the kernel whatever user it runs as
        *("--perms", "1777", "--size", str(limits.disk_mb * mib), "--tmpfs", "/tmp"),
        *("--perms", "0777", "--size", str(limits.disk_mb * mib), "--tmpfs", STUDENT_HOME),
    ]
    if not root:
        args.insert(1, "--unshare-user")
    readable = readable_paths()
    # The folders above each mount point, traversable by the kernel's user (bwrap would make
    # them 0700, owned by root).
    for parent in sorted({str(a) for p in [*readable, Path(STAGE), run_dir] for a in p.parents} - {"/", "/usr"}):
        if not parent.startswith("/usr/"):
            args += ["--perms", "0755", "--dir", parent]
    for path in readable:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", str(work), STAGE, "--bind", str(run_dir), str(run_dir), "--chdir", STUDENT_HOME]
    for name, value in env.items():
        args += ["--setenv", name, value]
    # Inside: copy the student's files into the home, then become the kernel.
    start = f"mkdir -p {shlex.quote(workdir)} && cp -R {STAGE}/. {shlex.quote(workdir)}/ && cd {shlex.quote(workdir)}"
    inner = ["/bin/sh", "-c", f'{start} && exec "$0" "$@"', *command]
    if root:  # not as root: root is exempt from the process limit, and owns too much
        uid = kernel_uid() if uid is None else uid
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
        inner = [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
            *inner,
        ]
    else:
        args.append("--")
    extra = 0 if root else _tasks_of_this_user()
    return ["prlimit", *limits.rlimits(extra), "--", *args, *inner]


def kernel_uid() -> int:
    """The user id a root grader runs this process's kernel as: no account has it, no file
    belongs to it, no other kernel running at the same time has it."""
    return FIRST_KERNEL_UID + os.getpid()


def _tasks_of_this_user() -> int:
    """How many processes and threads this user runs now (the process limit counts them)."""
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass
    return count


def _minimal_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


# ---------------------------------------------------------------------------------------
# Copying the student's files out
# ---------------------------------------------------------------------------------------


def copy_out(source: Path, destination: Path, budget_bytes: int) -> list[str]:
    """Copy the plain files under ``source`` (the sandbox's working folder, seen from
    outside) into ``destination``; never a link, a device or a file over the budget left.
    Existing files of the same name are replaced only by plain files. Returns what was
    skipped, in words."""
    skipped = []
    for folder, dirs, files in os.walk(source, followlinks=False):
        relative = Path(folder).relative_to(source)
        for name in sorted(files):
            path = Path(folder) / name
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                skipped.append(f"{relative / name} (not a plain file)")
                continue
            if info.st_size > budget_bytes:
                skipped.append(f"{relative / name} (over the size left)")
                continue
            target = destination / relative / name
            if target.parent.is_symlink() or (target.exists() and not target.is_file()) or target.is_symlink():
                skipped.append(f"{relative / name} (would replace something that is not a plain file)")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            budget_bytes -= info.st_size
        for name in list(dirs):
            if (Path(folder) / name).is_symlink():
                dirs.remove(name)
                skipped.append(f"{relative / name} (a link)")
    return skipped


# ---------------------------------------------------------------------------------------
# The kernel manager nbgrader's Execute uses
# ---------------------------------------------------------------------------------------


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in the sandbox (see the module's docstring)."""

    enabled = Bool(True, help="run the kernel in the sandbox (False: as nbgrader does, with the grader's rights)").tag(
        config=True
    )
    memory_mb = Int(Limits.memory_mb, help="address space of each process of the kernel, MiB").tag(config=True)
    cpu_seconds = Int(Limits.cpu_seconds, help="CPU time of each process of the kernel, seconds").tag(config=True)
    file_mb = Int(Limits.file_mb, help="largest file the kernel may write, MiB").tag(config=True)
    disk_mb = Int(Limits.disk_mb, help="size of the kernel's working folder and of its /tmp, MiB").tag(config=True)
    open_files = Int(Limits.open_files, help="open files of each process").tag(config=True)
    processes = Int(Limits.processes, help="processes and threads of the kernel").tag(config=True)
    scratch_root = Unicode("", help="where the sandboxes' connection folders go (default: the system's temp)").tag(
        config=True
    )

    _run_dir: Path | None = None
    _work: Path | None = None
    _outside_cwd: Path | None = None

    @property
    def limits(self) -> Limits:
        return Limits(**{f.name: getattr(self, f.name) for f in fields(Limits)})

    async def _async_pre_start_kernel(self, **kw):
        if not self.enabled:
            return await super()._async_pre_start_kernel(**kw)
        check_available()
        self._run_dir = Path(tempfile.mkdtemp(prefix="kernel-", dir=self.scratch_root or None))
        self._work = self._run_dir / "submission"
        self._work.mkdir()
        cwd = kw.get("cwd")
        self._outside_cwd = Path(cwd) if cwd else None
        if self._outside_cwd is not None and self._outside_cwd.is_dir():
            _stage_submission(self._outside_cwd, self._work)
        if os.geteuid() == 0:
            os.chown(self._run_dir, kernel_uid(), kernel_uid())
        # ZeroMQ over Unix sockets in the connection folder: the sandbox has no network.
        self.transport = "ipc"
        self.ip = str(self._run_dir / "kernel")
        self.connection_file = str(self._run_dir / "kernel.json")
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        if self.kernel_spec is not None:  # SIGINT would reach bwrap, not the kernel: ask the kernel
            self.kernel_spec.interrupt_mode = "message"
        if os.geteuid() == 0:
            os.chmod(self.connection_file, 0o644)
        assignment = self._outside_cwd.name if self._outside_cwd is not None else "work"
        kernel_cmd = sandbox_command(kernel_cmd, self._work, self._run_dir, self.limits, assignment=assignment)
        kw["env"] = _minimal_env()
        kw["cwd"] = str(self._run_dir)
        self.log.debug("sandboxed kernel: %s", shlex.join(kernel_cmd))
        return kernel_cmd, kw

    async def shutdown_kernel(self, now: bool = False, restart: bool = False):
        if self.enabled and self._outside_cwd is not None:
            self._copy_out()
        await super().shutdown_kernel(now=now, restart=restart)
        if not restart:
            self._remove_run_dir()

    def _copy_out(self) -> None:
        """What the notebook wrote in its working folder, into the graded folder."""
        inside = self._sandbox_pid()
        if inside is None or self._outside_cwd is None:
            return
        assignment = self._outside_cwd.name
        source = Path(f"/proc/{inside}/root{STUDENT_HOME}/{assignment}")
        try:
            skipped = copy_out(source, self._outside_cwd, self.disk_mb * 1024 * 1024)
        except OSError as error:
            self.log.warning("could not copy the kernel's files out of the sandbox: %s", error)
            return
        if skipped:
            self.log.warning("left in the sandbox: %s", ", ".join(skipped[:20]))

    def _sandbox_pid(self) -> int | None:
        """A process inside the sandbox (its root is the sandbox's file system)."""
        process = getattr(self.provisioner, "process", None)
        if process is None or process.poll() is not None:
            return None
        try:
            import psutil

            children = psutil.Process(process.pid).children(recursive=True)
        except Exception:
            return None
        # prlimit execs bwrap; bwrap's first child is in the sandbox's mount namespace
        for child in children:
            try:
                if os.readlink(f"/proc/{child.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                    return child.pid
            except OSError:
                continue
        return None

    def _remove_run_dir(self) -> None:
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None


def _stage_submission(source: Path, stage: Path) -> None:
    """The student's files for the sandbox: plain files and folders, not the notebooks being
    graded (their copy in the graded folder holds the checks) and never a link."""
    for folder, dirs, files in os.walk(source, followlinks=False):
        relative = Path(folder).relative_to(source)
        dirs[:] = [name for name in dirs if not (Path(folder) / name).is_symlink()]
        (stage / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file() or (relative == Path(".") and name.endswith(".ipynb")):
                continue
            shutil.copyfile(path, stage / relative / name)
    if os.geteuid() == 0:
        for folder, dirs, files in os.walk(stage):
            for name in [*dirs, *files]:
                os.chmod(Path(folder) / name, 0o755 if name in dirs else 0o644)
