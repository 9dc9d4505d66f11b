"""Warm stage starts: a stage's process hands its command to a server that has the heavy libraries (torch,
transformers, optimum's ONNX Runtime, pandas, SciPy) imported already, and the server forks a child that runs the
stage script. A default pipeline runs about 60 stages, one process each; importing those libraries is ~5 s of each.

- Exactness: the server imports third-party libraries only, never ``prunequant`` (it runs this file as a script,
  and checks), so every child imports the stage's code from the files as they are now, as a cold process would.
  The child takes the stage's argv, working directory, environment, umask, ``sys.path`` and stdin/stdout/stderr.
- One server per (interpreter, environment, installed packages, this file): a change of any starts another. It
  exits after :data:`IDLE_S` seconds without a stage (``PRUNEQUANT_WARM_IDLE_S``, default 120). The first stage of a
  run starts it and runs cold itself.
- Ctrl-C and ``kill`` reach the child (the stage's process forwards them); a stage process that dies kills its
  child. Anything wrong before the child starts and the stage runs cold, as without a server.
- ``PRUNEQUANT_WARM=0`` turns it off (the tests do, but for their own tests of it).

Standard library only: the stage's process imports this module first, before anything heavy.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

IDLE_S = float(os.environ.get("PRUNEQUANT_WARM_IDLE_S", "120"))  # a server with no stage for this long exits
# Modules most stages import. Imported only, nothing run: torch makes its thread pools on first use, in the child.
PRELOAD = ("torch", "transformers", "transformers.models.auto.modeling_auto", "transformers.models.bert.modeling_bert",
           "transformers.models.auto.tokenization_auto", "optimum.onnxruntime", "optimum.intel.openvino.modeling",
           "bitsandbytes", "datasets", "pandas", "pyarrow.parquet", "scipy.stats", "click", "tqdm.auto")
# Set by the launcher of each process, not by the user: they do not change what a stage computes.
_VOLATILE_ENV = ("_", "OLDPWD", "PWD", "SHLVL", "DVC_STAGE", "DVC_ROOT", "PS1", "TERM_SESSION_ID")
_HEADER = struct.Struct("!I")


def enabled() -> bool:
    """Warm starts are on (``PRUNEQUANT_WARM`` is not 0), this is no process of a multi-process training run, and
    the platform has what the hand-off needs (file descriptors over Unix sockets, process file descriptors)."""
    return (os.environ.get("PRUNEQUANT_WARM", "1") != "0" and "RANK" not in os.environ
            and hasattr(socket, "send_fds") and hasattr(os, "pidfd_open"))


def _site_stamp() -> str:
    """Changes when packages are installed or removed (their folders come and go)."""
    import sysconfig

    stamps = []
    for key in ("purelib", "platlib"):
        try:
            stamps.append(os.stat(sysconfig.get_paths()[key]).st_mtime_ns)
        except OSError:
            pass
    return repr(stamps)


def socket_path() -> str:
    """The server's socket for this interpreter, environment, set of installed packages and this file."""
    env = {k: v for k, v in os.environ.items() if k not in _VOLATILE_ENV}
    with open(__file__, "rb") as source:
        key = json.dumps([sys.executable, sys.version, sorted(env.items()), _site_stamp(),
                          hashlib.sha256(source.read()).hexdigest()])
    folder = os.path.join(os.environ.get("XDG_RUNTIME_DIR") or "/tmp", f"prunequant-warm-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.stat(folder)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{folder}: not a private folder of this user")
    return os.path.join(folder, hashlib.sha256(key.encode()).hexdigest()[:20] + ".sock")


def _send(conn: socket.socket, payload: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(payload).encode()
    if fds:
        socket.send_fds(conn, [_HEADER.pack(len(data))], fds)
    else:
        conn.sendall(_HEADER.pack(len(data)))
    conn.sendall(data)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(size)
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv(conn: socket.socket, with_fds: int = 0) -> tuple[dict, list[int]]:
    fds: list[int] = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, with_fds)
        if len(head) < _HEADER.size:
            head += _recv_exact(conn, _HEADER.size - len(head))
    else:
        head = _recv_exact(conn, _HEADER.size)
    (size,) = _HEADER.unpack(head)
    return json.loads(_recv_exact(conn, size)), fds


# ---- the stage's side --------------------------------------------------------------------------------------

def hand_off() -> None:
    """Run this stage in a warm server's child and exit with its status; return (to run cold) when there is no
    server yet (one is started for the next stage), when warm starts are off, or in the child itself."""
    if os.environ.get("PRUNEQUANT_WARM_CHILD") == str(os.getpid()) or not enabled():
        return
    try:
        path = socket_path()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        _start_server()
        return
    with conn:
        try:
            request = {"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path,
                       "umask": _umask()}
            _send(conn, request, [0, 1, 2])
            child = _recv(conn)[0]["pid"]
        except (OSError, ValueError):
            return  # the server is going away: run cold
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
        try:
            status = _recv(conn)[0]["status"]
        except (OSError, ValueError):
            print("error: the warm stage server stopped during the stage; rerun (PRUNEQUANT_WARM=0 runs stages "
                  "without it)", file=sys.stderr)
            status = 1
    os._exit(status)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _start_server() -> None:
    """Start a server in the background for the next stages (a no-op if another stage is starting one)."""
    try:
        lock = socket_path() + ".starting"
        try:
            if time.time() - os.stat(lock).st_mtime < 60:
                return
        except FileNotFoundError:
            pass
        with open(lock, "w"):
            pass
        with open(socket_path() + ".log", "w") as log:  # why a server did not come up, if one does not
            subprocess.Popen([sys.executable, __file__, "serve"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True, cwd="/")
    except OSError:
        pass


# ---- the server's side -------------------------------------------------------------------------------------

def _run_child(request: dict, fds: list[int], listener: socket.socket, conn: socket.socket) -> None:
    """In the forked child: become the stage's process, run its script, exit with its status."""
    status = 1
    try:
        listener.close()
        conn.close()
        for fd, target in zip(fds, (0, 1, 2), strict=False):  # the client sends its 0, 1, 2
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["PRUNEQUANT_WARM_CHILD"] = str(os.getpid())
        sys.path[:] = request["path"]
        sys.argv[:] = request["argv"]
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            stream.reconfigure(line_buffering=os.isatty(fd) or stream is sys.stderr,
                               write_through="PYTHONUNBUFFERED" in os.environ)
        import runpy

        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
            status = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                status = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                status = 1
        except KeyboardInterrupt:
            status = 128 + signal.SIGINT
        except BaseException:  # noqa: BLE001 - what a cold process prints for an uncaught error
            import traceback

            traceback.print_exc()
            status = 1
        import atexit

        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def _still_ours(path: str, inode: int) -> bool:
    """The socket file is still this server's (removing it stops the server)."""
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def serve() -> None:
    """Import :data:`PRELOAD`, listen on :func:`socket_path`, fork a child per stage until idle."""
    import importlib

    path = socket_path()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - not installed or broken here: a stage that needs it imports it (and says why)
            pass
    if any(name == "prunequant" or name.startswith("prunequant.") for name in sys.modules):
        raise SystemExit("warm server: prunequant was imported before a fork; its children would run stale code")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener.bind(path)
    inode = os.stat(path).st_ino
    listener.listen(16)
    try:
        os.unlink(path + ".starting")
    except FileNotFoundError:
        pass
    running: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, connection to the stage's process)
    orphans: set[socket.socket] = set()  # connections whose stage process went away (their child was stopped)
    last = time.monotonic()
    try:
        while running or (time.monotonic() - last < IDLE_S and _still_ours(path, inode)):
            watched = [listener, *running, *(conn for _, conn in running.values() if conn not in orphans)]
            ready, _, _ = select.select(watched, [], [], 5.0)
            for item in ready:
                if item is listener:
                    conn, _ = listener.accept()
                    try:
                        request, fds = _recv(conn, with_fds=3)
                    except (OSError, ValueError):
                        conn.close()
                        continue
                    pid = os.fork()
                    if pid == 0:
                        _run_child(request, fds, listener, conn)
                    for fd in fds:
                        os.close(fd)
                    _send(conn, {"pid": pid})
                    running[os.pidfd_open(pid)] = (pid, conn)
                elif isinstance(item, int):  # a child ended
                    pid, conn = running.pop(item)
                    os.close(item)
                    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                    try:
                        _send(conn, {"status": code if code >= 0 else 128 - code})  # killed by a signal: 128 + it
                    except OSError:
                        pass
                    orphans.discard(conn)
                    conn.close()
                    last = time.monotonic()
                else:  # the stage's process went away (killed): its child goes too
                    for pid, conn in running.values():
                        if conn is item:
                            os.kill(pid, signal.SIGTERM)
                            orphans.add(conn)
    finally:
        listener.close()
        if _still_ours(path, inode):  # not a newer server's socket
            os.unlink(path)


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
    serve()
