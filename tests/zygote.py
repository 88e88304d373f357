"""Test servers and console-script runs forked from a process that has imported the serving code and
the CLI once (a zygote), instead of a new interpreter for each: a `prelu-deploy serve` spent ~1 s of
CPU on its imports before it read its arguments, and the suite starts about fifty (tests/server.py),
besides the `cli` fixture's runs (tests/conftest.py).

Each is still a process of its own, running the console script's main() with its own argv,
environment, working directory, stdout and stderr (pipes the test reads), signals and exit status:
only the interpreter's start and the imports happen before the fork. A zygote stays single-threaded
(checked before each fork; onnxruntime is not imported there, as loading it may start a thread) and
holds nothing else open. There is one per terminal width asked for (COLUMNS: rich's consoles made on
import read it). A start whose environment differs from the tests' in another variable read on start
(PYTHONPATH, a sitecustomize, thread counts, the locale) gets a new interpreter instead
(`zygote_can_start`); so does `Server(fresh=True)`. A start may name modules for the zygote to import
before its fork (`preload`: the `cli` fixture's torch, for the commands that import it), so that each
later start finds them imported.

The protocol, over a socketpair of datagrams: the test sends {argv, env, cwd, preload} with the write ends of
the child's stdout (and stderr) pipes attached; the zygote forks and answers {"started": pid}; when a
child ends it reaps it and sends {"exited": pid, "status": Popen's returncode}."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

# Read by pytest's process at import (collection), before any test changes the environment.
BASE_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# What is read while the interpreter starts or the zygote's modules are imported (the interpreter's own
# PYTHON* but PYTHONBREAKPOINT, read when called; the C library and loader; OpenBLAS's and OpenMP's threads;
# the locale; rich's terminal; prometheus_client's multiprocess mode; gRPC; pydantic; typer; torch, where
# preloaded; the temporary folder, cached once asked; PATH): a start that differs from the tests'
# environment in one of these (but the width, which has zygotes of its own) gets a new interpreter. Other
# variables are read when the code runs, and the child's environment is the start's own — among them those
# that torch or Ray put in the test process's environment (torch.compile: TORCHINDUCTOR_CACHE_DIR and
# KMP_DUPLICATE_LIB_OK; a prefix that caught one of those sent every later start to a new interpreter).
READ_ON_START = (
    "PYTHON", "LD_", "MALLOC_", "GLIBC_", "OMP_", "OPENBLAS_", "GOTO", "NUMPY_", "LC_", "LANG", "TZ", "TERM",
    "COLORTERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "PROMETHEUS", "prometheus_multiproc_dir",
    "GRPC_", "PYDANTIC_", "TYPER_", "_TYPER", "TORCH_", "TMP", "TEMP", "PATH",
)  # fmt: skip
READ_WHEN_CALLED = ("PYTHONBREAKPOINT",)
# The terminal's width is read on import too (rich's consoles made then): a zygote for each width asked for.
WIDTH = "COLUMNS"

ZYGOTE = r"""
import importlib, json, os, select, signal, socket, sys

import prelu_deploy.cli.main
import prelu_deploy.serve.api.app
import prelu_deploy.serve.repository.control
import prelu_deploy.serve.repository.loader
import prelu_deploy.serve.workers.processes
import PIL.Image
import tritonclient.grpc
import uvicorn.protocols.http.httptools_impl
import uvicorn.lifespan.on

sock = socket.socket(fileno=int(sys.argv[1]))
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
children = set()


def reap():
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        children.discard(pid)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        sock.send(json.dumps({"exited": pid, "status": code}).encode())


def become(request, out, err):
    # the child: nothing of the zygote's own left open, then the console script's `sys.exit(main())`
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.close(wake_r)
    os.close(wake_w)
    sock.close()
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    if err != out:
        os.close(err)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    sys.exit(prelu_deploy.cli.main.main())


while True:
    ready = select.select([sock, wake_r], [], [])[0]
    if wake_r in ready:
        os.read(wake_r, 4096)
        reap()
    if sock in ready:
        message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        if not message:  # the test process has gone: so do the servers it left (SIGTERM: a supervisor stops its workers)
            for pid in children:
                os.kill(pid, signal.SIGTERM)
            break
        request = json.loads(message)
        for name in request["preload"]:  # what this start and later ones import: once here, not in each of them
            importlib.import_module(name)
        tasks = os.listdir("/proc/self/task")
        assert tasks == [str(os.getpid())], f"{len(tasks)} threads: forking here would not be safe"
        pid = os.fork()
        if pid == 0:
            become(request, fds[0], fds[-1])  # never returns: the child exits as the script would
        for fd in fds:
            os.close(fd)
        children.add(pid)
        sock.send(json.dumps({"started": pid}).encode())
"""


def zygote_can_start(env: dict) -> bool:
    """Whether a start with `env` can be forked from a zygote: its environment differs from the tests'
    in no variable read on start (READ_ON_START) but the terminal's width (the zygote's own)."""
    keys = {k for k in env.keys() | BASE_ENV.keys() if k.startswith(READ_ON_START) and k not in READ_WHEN_CALLED and k != WIDTH}
    return all(env.get(k) == BASE_ENV.get(k) for k in keys)


def popen(argv: list[str], env: dict, stderr: bool = False, fresh: bool = False, preload: tuple[str, ...] = ()):
    """argv (the console script and its arguments) as subprocess.Popen(argv, env=env, stdout=PIPE, text=True)
    runs it, with stderr=STDOUT, or stderr=PIPE where `stderr` is true: forked from a zygote where it can
    be (zygote_can_start), else — or `fresh` — in a new interpreter. A ForkedProcess or a Popen.
    `preload`: modules the command imports, for the zygote to import first (see Zygote.start)."""
    if not fresh and zygote_can_start(env):
        return Zygote.get(env).start(argv, env, stderr=stderr, preload=preload)
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE if stderr else subprocess.STDOUT, text=True, env=env
    )


class ForkedProcess:
    """The part of subprocess.Popen that tests use, for a child of the zygote: `pid`, `stdout` and
    `stderr` (text; stderr None when it goes to stdout), `returncode`, poll(), wait(), communicate(),
    send_signal(), terminate(), kill(). Should the zygote die first, its exit status cannot be known:
    poll() and wait() raise instead of answering "still running" forever."""

    def __init__(self, args: list[str], pid: int, stdout, stderr=None):
        self.args, self.pid, self.stdout, self.stderr, self.returncode = args, pid, stdout, stderr, None
        self._ended, self._lost = threading.Event(), False

    def _exited(self, status: int | None) -> None:
        """Its exit status; None: the zygote died before it could tell."""
        self.returncode, self._lost = status, status is None
        self._ended.set()

    def _known(self) -> int | None:
        if self._lost:
            raise RuntimeError(f"the test servers' zygote died: the exit status of {self.pid} is unknown")
        return self.returncode

    def poll(self) -> int | None:
        return self._known()

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._known()

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        """(stdout, stderr) read to their ends, both at once (as Popen's: neither pipe fills and blocks the
        child), once it has exited; subprocess.TimeoutExpired past `timeout`."""
        outputs = {}
        readers = [
            threading.Thread(target=lambda f=f: outputs.__setitem__(f, f.read()), daemon=True)
            for f in (self.stdout, self.stderr)
            if f is not None
        ]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        self.wait(timeout)
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if any(reader.is_alive() for reader in readers):  # a grandchild holds the pipes open
            raise subprocess.TimeoutExpired(self.args, timeout)
        return outputs.get(self.stdout), outputs.get(self.stderr)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # as Popen: never a signal to a pid that may have been reused
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """A zygote of this pytest process for one terminal width, started at its first use; it ends with
    this process."""

    _started: dict[str | None, "Zygote"] = {}
    _lock = threading.Lock()

    @classmethod
    def get(cls, env: dict) -> "Zygote":
        """The zygote for a start with `env` (see zygote_can_start)."""
        width = env.get(WIDTH)
        with cls._lock:
            if width not in cls._started or cls._started[width].proc.poll() is not None:
                cls._started[width] = cls(width)
            return cls._started[width]

    def __init__(self, width: str | None = BASE_ENV.get(WIDTH)):
        env = {k: v for k, v in BASE_ENV.items() if k != WIDTH} | ({WIDTH: width} if width is not None else {})
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self.sock, self.lock = mine, threading.Lock()
        self.children: dict[int, ForkedProcess] = {}
        self.early: dict[int, int] = {}  # statuses of children that ended before their handle was made
        self.started: list[int] = []
        self.gone = False  # its end of the socket closed: it died (its exit status may come a moment later)
        self.answer = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while message := self.sock.recv(4096):
            event = json.loads(message)
            with self.answer:
                if "started" in event:
                    self.started.append(event["started"])
                    self.answer.notify_all()
                elif child := self.children.pop(event["exited"], None):
                    child._exited(event["status"])
                else:
                    self.early[event["exited"]] = event["status"]
        with self.answer:  # the zygote died: no answer will come
            self.gone = True
            for child in self.children.values():
                child._exited(None)
            self.children.clear()
            self.answer.notify_all()

    def start(self, argv: list[str], env: dict, stderr: bool = False, preload: tuple[str, ...] = ()) -> ForkedProcess:
        """argv[0] the console script, run as by subprocess.Popen(argv, env=env, stdout=PIPE, text=True) with
        stderr=STDOUT, or with stderr=PIPE where `stderr` is true. `preload`: modules the zygote imports
        before this fork, if it has not yet (a module whose import starts a thread is refused: the zygote dies),
        so that this start and every later one of this zygote find them imported."""
        pipes = [os.pipe() for _ in range(2 if stderr else 1)]
        with self.lock:  # one start at a time: the answer is this start's pid
            try:
                request = json.dumps({"argv": argv, "env": env, "cwd": os.getcwd(), "preload": list(preload)}).encode()
                socket.send_fds(self.sock, [request], [write for _, write in pipes])
            finally:
                for _, write in pipes:
                    os.close(write)
            with self.answer:
                if not self.answer.wait_for(lambda: self.started or self.gone, 60) or not self.started:
                    for read, _ in pipes:
                        os.close(read)
                    try:
                        status = self.proc.wait(10)
                    except subprocess.TimeoutExpired:
                        status = "none: still running"
                    raise RuntimeError(f"the test servers' zygote did not fork (exit status {status})")
                pid = self.started.pop()
                child = ForkedProcess(argv, pid, *(open(read, encoding=None) for read, _ in pipes))
                if pid in self.early:
                    child._exited(self.early.pop(pid))
                else:
                    self.children[pid] = child
        return child
