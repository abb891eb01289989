"""``emotion-detector keys create NAME | list | revoke KEY | adopt KEY``: API keys in the configured database."""

from __future__ import annotations

import argparse
import sys

from emotion_detector.accounts.keys import Keys
from emotion_detector.settings import Settings
from emotion_detector.videos.db import migrate, sessions


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = commands.add_parser("keys", help="API keys (EMOTION_AUTH=required)").add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print it (once: only its hash is stored)")
    create.add_argument("name", help="who or what uses it, e.g. a person or a script")
    actions.add_parser("list", help="the keys: id, the key's first characters, name, created, revoked")
    revoke = actions.add_parser(
        "revoke", help="revoke a key and end its sessions: every web process refuses them within EMOTION_AUTH_CACHE_S (10 s)"
    )
    revoke.add_argument("key", help="the key's id or its first characters as `list` shows them")
    adopt = actions.add_parser(
        "adopt", help="give the videos uploaded while sign-in was off to a key (the first key made takes those before it)"
    )
    adopt.add_argument("key", help="the key's id or its first characters as `list` shows them")


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    migrate(settings.database_url)
    keys = Keys(sessions(settings.database_url))
    if args.action == "create":
        try:
            key = keys.create(args.name)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
        print(key.secret)
        print(f"key {key.id} ({key.name}): shown once, store it now; send it as 'Authorization: Bearer <key>'", file=sys.stderr)
        if key.adopted_videos:
            print(f"the first key: {_unowned(key.adopted_videos)} to it", file=sys.stderr)
        return 0
    if args.action == "list":
        for found in keys.list():
            revoked = f"revoked {found.revoked_at:%Y-%m-%d %H:%M}" if found.revoked_at else "active"
            print(f"{found.id}  {found.display}…  {found.name}  created {found.created_at:%Y-%m-%d %H:%M}  {revoked}")
        return 0
    if args.action == "adopt":
        adopted = keys.adopt_unowned(args.key)
        if adopted is None:
            print(f"no active key {args.key!r}", file=sys.stderr)
            return 2
        found, count = adopted
        print(f"{_unowned(count)} to {found.id} ({found.name})")
        return 0
    revoked_key = keys.revoke(args.key)
    if revoked_key is None:
        print(f"no key {args.key!r}", file=sys.stderr)
        return 2
    print(f"revoked {revoked_key.id} ({revoked_key.name})")
    return 0


def _unowned(count: int) -> str:
    videos, belong = ("video", "belongs") if count == 1 else ("videos", "belong")
    return f"{count} {videos} uploaded while sign-in was off now {belong}"
