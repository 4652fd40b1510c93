"""Operator commands on the catalogue's data: `wardrobe users delete NAME` and `wardrobe gc`."""
from __future__ import annotations

import json
import sys


def delete_user(settings, name: str) -> int:
    """Delete the user and everything of theirs: tokens, jobs (queued and running ones too), photos,
    items, and every stored object under their prefix."""
    from sqlalchemy import select

    from db import retention
    from db.bootup import bootup
    from db.models import User
    from db.session import session_scope

    rt = bootup(settings)
    with session_scope() as s:
        uid = s.scalar(select(User.id).where(User.name == name))
        if uid is None:
            print(f"error: no user {name!r}", file=sys.stderr)
            return 2
        purged = retention.purge_user(s, uid)
    retention.delete_user_objects(rt.storage, uid, purged)
    left = " (storage refused: the sweeper removes them later)" if purged.objects_left else ""
    print(f"deleted user {name} ({uid}): {purged.jobs} jobs, {purged.photos} photos, {purged.items} items, "
          f"{purged.objects} stored objects{left}; API processes forget the user's tokens within "
          f"WARDROBE_TOKEN_CACHE_SECONDS", file=sys.stderr)
    return 0


def gc(settings, dry_run: bool, grace: int | None) -> int:
    """One sweep (db.sweeper); the counts as JSON on stdout, the log line on stderr."""
    import logging

    from db.bootup import bootup
    from db.sweeper import sweep

    rt = bootup(settings)
    logging.getLogger("wardrobe.gc").setLevel(logging.INFO)
    if not logging.getLogger().handlers or logging.getLogger().level > logging.INFO:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("wardrobe.gc").addHandler(handler)
        logging.getLogger("wardrobe.gc").propagate = False
    result = sweep(rt, dry_run=dry_run, grace=grace)
    print(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0
