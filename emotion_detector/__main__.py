"""Command line: ``emotion-detector analyze SOURCE...``, ``edge``, ``forward``, ``keys create|list|revoke``, ``run``
and ``models download|list`` (the console script ``pip install .`` installs; ``python -m emotion_detector`` is the same)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emotion_detector import analyze_cli
from emotion_detector.accounts import cli as keys_cli
from emotion_detector.edge import command as edge_command
from emotion_detector.edge import forward_cli
from emotion_detector.models import MODEL_FILES, ChecksumMismatch, download
from emotion_detector.settings import Settings
from serving import SHIPPED_MODELS

SHIPPED_FILES = ("model.onnx", "model.json", "MODEL_CARD.md")  # every shipped model version has these


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="emotion-detector", description="Faces in images, videos and streams: expression, apparent age and gender."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("run", help="start every process in the Procfile, restarting any that dies (make run)")
    local.add_argument("--procfile", type=Path, default=Path("Procfile"), help="the process list (default: ./Procfile, a checkout's)")
    local.add_argument("--state-dir", type=Path, help="where supervisord keeps its configuration and log (default: EMOTION_INSTANCE_DIR)")
    models = commands.add_parser("models", help="the shipped models and optional third-party model files").add_subparsers(
        dest="action", required=True
    )
    fetch = models.add_parser("download", help="download and verify a model file")
    fetch.add_argument("name", nargs="?", default="yunet", choices=sorted(MODEL_FILES))
    fetch.add_argument("--dest", type=Path, help="directory (default: where EMOTION_YUNET_PATH points)")
    fetch.add_argument("--url", help="download from a mirror instead (the checksum is still enforced)")
    models.add_parser("list", help="show the shipped models and the known model files, and whether they are present")
    analyze_cli.add_parser(commands)
    keys_cli.add_parser(commands)
    edge_command.add_parser(commands)
    forward_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "analyze":
        return analyze_cli.run(args)
    if args.command == "keys":
        return keys_cli.run(args)
    if args.command == "edge":
        return edge_command.run(args)
    if args.command == "forward":
        return forward_cli.run(args)
    if args.command == "run":
        from emotion_detector.local_run import run

        if not args.procfile.is_file():
            print(f"no Procfile at {args.procfile.absolute()}: run this in a checkout or pass --procfile", file=sys.stderr)
            return 2
        return run(args.state_dir or Settings().instance_dir, args.procfile)

    settings = Settings()
    if args.action == "list":
        for model_file in sorted(SHIPPED_MODELS.glob("*/*/model.onnx")):
            directory = model_file.parent
            missing = [name for name in SHIPPED_FILES if not (directory / name).is_file()]
            state = f"missing {', '.join(missing)}" if missing else "present"
            print(f"{directory.parent.name} v{directory.name}: shipped -> {directory} [{state}]")
        for model in MODEL_FILES.values():
            present = settings.yunet_path.is_file() if model.name == "yunet" else False
            print(f"{model.name}: {model.filename} ({model.licence}) -> {settings.yunet_path} [{'present' if present else 'missing'}]")
        return 0
    model = MODEL_FILES[args.name]
    destination = args.dest or settings.yunet_path.parent
    try:
        path = download(model, destination, url=args.url)
    except (OSError, ChecksumMismatch) as error:
        print(f"download failed: {error}", file=sys.stderr)
        return 1
    print(f"{model.name}: {path} (sha256 {model.sha256[:12]}…, {model.licence})")
    if path != settings.yunet_path:
        print(f"set EMOTION_YUNET_PATH={path} so the app uses it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
