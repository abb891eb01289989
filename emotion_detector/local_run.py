"""``python -m emotion_detector run``: every process of the Procfile on this machine, under supervisord, so
that one process dying is restarted on its own instead of stopping the others (as honcho and foreman do).

The Procfile stays the one list of processes (Heroku reads it too); this module only turns it into a
supervisord configuration in the state directory and runs supervisord in the foreground. Each line runs
through ``/bin/sh`` from the Procfile's directory (the checkout's root), so its ``${VAR:-default}`` expansions
work as on Heroku.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from emotion_detector.settings import Settings

# supervisord gives up on a process that dies within START_SECONDS of starting this many times in a row (a
# port taken, a broken setting): a crash loop stops with a clear FATAL line instead of spinning forever. A
# process that ran longer than that is restarted however often it dies.
START_SECONDS = 3
START_RETRIES = 5


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
            "stopasgroup=true",
            "killasgroup=true",
            "stopwaitsecs=10",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "",
        ]
    return "\n".join(lines)


def run(state_dir: Path, procfile: Path) -> None:
    """Write the configuration and become supervisord (it stops every process on Ctrl-C / SIGTERM)."""
    procfile = procfile.resolve()
    processes = wanted_processes(read_procfile(procfile), Settings())
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "supervisord.conf"
    config.write_text(supervisord_config(processes, state_dir, procfile.parent))
    # bandit B606: this Python runs supervisord (no shell) with the configuration written just above.
    os.execv(sys.executable, [sys.executable, "-m", "supervisor.supervisord", "--configuration", str(config)])  # nosec B606
