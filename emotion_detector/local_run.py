"""``python -m emotion_detector run``: every process of the Procfile on this machine, under supervisord, so
that one process dying is restarted on its own instead of stopping the others (as honcho and foreman do).

The Procfile stays the one list of processes (Heroku reads it too); this module only turns it into a
supervisord configuration in the state directory and runs supervisord, printing the address and the next
steps once the web app answers that everything it needs is up. Each line runs through ``/bin/sh`` from the
Procfile's directory (the checkout's root), so its ``${VAR:-default}`` expansions work as on Heroku.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from emotion_detector.settings import Settings

# supervisord gives up on a process that dies within START_SECONDS of starting this many times in a row (a
# port taken, a broken setting): a crash loop stops with a clear FATAL line instead of spinning forever. A
# process that ran longer than that is restarted however often it dies.
START_SECONDS = 3
START_RETRIES = 5
UP_POLL_S = 0.5
UP_PATIENCE_S = 180  # then the terminal is told to look at the log above instead of waiting in silence
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def read_procfile(path: Path) -> dict[str, str]:
    """``name: command`` lines; blank lines and ``#`` comments skipped."""
    processes = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, separator, command = line.partition(":")
        if not separator or not name.strip().isidentifier() or not command.strip():
            raise ValueError(f"{path}:{number}: expected 'name: command', got {line!r}")
        processes[name.strip()] = command.strip()
    return processes


def wanted_processes(processes: dict[str, str], settings: Settings) -> dict[str, str]:
    """The Procfile's processes this machine's settings call for: no forwarder without a broker to read (edge
    mode is optional; a laptop without a broker runs the rest)."""
    needed = {"forwarder": bool(settings.mqtt_url)}
    return {name: command for name, command in processes.items() if needed.get(name, True)}


def supervisord_config(processes: dict[str, str], state_dir: Path, root: Path) -> str:
    """``root``: the directory each command runs in (the Procfile's)."""
    bin_dir = Path(sys.executable).parent  # the virtualenv's programs (gunicorn, celery) come first on PATH
    # supervisord expands %(...)s in its values: a literal % in a command must be doubled.
    lines = [
        "[supervisord]",
        "nodaemon=true",
        f"logfile={state_dir / 'supervisord.log'}",
        f"pidfile={state_dir / 'supervisord.pid'}",
        "loglevel=info",
        # As root, supervisord warns (CRIT) on every start that it keeps root's privileges; they are the
        # invoking user's to choose, and the programs run as that user either way.
        *(["user=root"] if os.geteuid() == 0 else []),
        "",
    ]
    for name, command in processes.items():
        shell_command = command.replace("%", "%%").replace("'", "'\\''")
        lines += [
            f"[program:{name}]",
            f"command=/bin/sh -c 'exec {shell_command}'",
            f"directory={root}",
            f'environment=PATH="{bin_dir}:%(ENV_PATH)s"',
            "autorestart=true",
            f"startsecs={START_SECONDS}",
            f"startretries={START_RETRIES}",
            # Stopping signals the program alone, which stops its own children (gunicorn's workers, Celery's
            # pool) in order; signalled too, Celery's pool would die under it, and it reports that as an
            # ERROR. A program still running after stopwaitsecs is killed with everything it started.
            "stopasgroup=false",
            "killasgroup=true",
            "stopwaitsecs=10",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "",
        ]
    return "\n".join(lines)


def run(state_dir: Path, procfile: Path) -> int:
    """Write the configuration, start supervisord and wait for it; Ctrl-C (or SIGTERM, SIGHUP) stops every
    process. Returns supervisord's exit status."""
    procfile = procfile.resolve()
    settings = Settings()
    processes = wanted_processes(read_procfile(procfile), settings)
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "supervisord.conf"
    config.write_text(supervisord_config(processes, state_dir, procfile.parent))
    # Its own process group: a terminal's Ctrl-C reaches this process alone and is passed on once.
    supervisord = subprocess.Popen(  # nosec B603  # this interpreter, a fixed module, the configuration written above
        [sys.executable, "-m", "supervisor.supervisord", "--configuration", str(config)],
        process_group=0,
        preexec_fn=_stop_with_parent,
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        if supervisord.poll() is None:
            supervisord.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    if "web" in processes:
        _announce_when_up(settings, supervisord)
    return supervisord.wait()


def _stop_with_parent() -> None:
    """In the child before it runs supervisord: the kernel sends it SIGTERM if this process dies, even by
    SIGKILL, so no process outlives `make run`."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def web_address() -> tuple[str, str]:
    """(the address to check the web app at, the one to open in a browser), from the Procfile's HOST and PORT."""
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "5000")
    local = host in ("", "0.0.0.0", "127.0.0.1", "localhost", "::", "::1")  # nosec B104  # read, to check it locally
    # localhost: a secure context in browsers, so the live page may use the camera over plain http.
    return f"http://{'127.0.0.1' if local else host}:{port}", f"http://{'localhost' if local else host}:{port}"


def _announce_when_up(settings: Settings, supervisord: subprocess.Popen[bytes]) -> None:
    """Prints the address and the next steps once /api/v1/health answers 200 (the web app, the model server,
    the database and the job queue are up); returns early if supervisord stops."""
    check_url, open_url = web_address()
    deadline = time.monotonic() + UP_PATIENCE_S
    while supervisord.poll() is None:
        try:
            with urllib.request.urlopen(f"{check_url}/api/v1/health", timeout=2) as answer:  # nosec B310  # http://, made above
                if answer.status == 200:
                    print(next_steps(settings, open_url), flush=True)
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or 503 while the model server loads
        if time.monotonic() > deadline:
            print(f"Not up after {UP_PATIENCE_S} s: see the log above, or {check_url}/api/v1/health", flush=True)
            return
        time.sleep(UP_POLL_S)


def command_line() -> str:
    """How to run `emotion-detector` from this terminal: the console script beside this interpreter (make run
    installs it into .venv), as a path relative to here when it is below."""
    script = Path(sys.executable).parent / "emotion-detector"
    if not script.is_file():
        return f"{shlex.quote(sys.executable)} -m emotion_detector"
    try:
        return shlex.quote(str(script.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(script))


def data_home(settings: Settings) -> str:
    """The instance folder when the database is the one in it (the embedded default), else the database too."""
    if settings.database_url == f"sqlite:///{settings.instance_dir / 'emotion-detector.db'}":
        return str(settings.instance_dir)
    from sqlalchemy import make_url

    return f"{make_url(settings.database_url).render_as_string(hide_password=True)}, videos in {settings.storage_dir}"


def next_steps(settings: Settings, url: str) -> str:
    cli = command_line()
    sign_in = (
        f"with an API key: {cli} keys create NAME"
        if settings.auth == "required"
        else "off on this machine (EMOTION_AUTH=required asks for an API key)"
    )
    return "\n".join(
        [
            "",
            f"Emotion Detector is up: {url}",
            f"  pages      {url}/ (live) · /images · /videos · /dashboard · /api/docs",
            f"  sign-in    {sign_in}",
            f"  data       {data_home(settings)}",
            f"  terminal   {cli} analyze photo.jpg clip.mp4",
            "  Ctrl-C stops every process.",
            "",
        ]
    )
