"""Operator commands on the catalogue's data: `wardrobe users` (create, token, list, tokens, revoke,
delete) and `wardrobe gc`."""
from __future__ import annotations

import json
import sys


def delete_user(settings, name: str) -> int:
    """Delete the user and everything of theirs: tokens, jobs (queued and running ones too), photos,
    items, and every stored object under their prefix."""
    from sqlalchemy import select

    from db import retention
    from db.models import User
    from db.session import new_session
    from services import dispatch
    from services.bootup import bootup

    bootup(settings)
    s = new_session()
    try:
        uid = s.scalar(select(User.id).where(User.name == name))
        if uid is None:
            print(f"error: no user {name!r}", file=sys.stderr)
            return 2
        purged = retention.purge_user(s, uid)
        acted = dispatch.commit(s)  # then their objects go
    finally:
        s.close()
    left = " (storage refused: the sweeper removes them later)" if acted.objects_left else ""
    print(f"deleted user {name} ({uid}): {purged.jobs} jobs, {purged.photos} photos, {purged.items} items, "
          f"{acted.objects} stored objects{left}; API processes forget the user's tokens within "
          f"WARDROBE_TOKEN_CACHE_SECONDS", file=sys.stderr)
    return 0


def gc(settings, dry_run: bool, grace: int | None) -> int:
    """One sweep (services.sweeper); the counts as JSON on stdout, the log line on stderr."""
    import logging

    from services.bootup import bootup
    from services.sweeper import sweep

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


def users(settings, a) -> int:
    from services.bootup import bootup

    bootup(settings)
    if a.action != "list" and not a.name:
        print(f"error: wardrobe users {a.action} needs a NAME", file=sys.stderr)
        return 2
    if a.action == "delete":
        return delete_user(settings, a.name)
    if a.action == "list":
        return _list_users()
    if a.action in ("tokens", "revoke"):
        return _tokens_or_revoke(a)
    if a.action == "create":
        return _create_user(a.name)
    return _new_token(a.name, a.revoke_others)  # token


def _list_users() -> int:
    from sqlalchemy import func, select

    from db.models import ApiToken, User
    from db.session import session_scope

    with session_scope() as s:
        live = func.count(ApiToken.id).filter(ApiToken.revoked_at.is_(None))
        rows = s.execute(select(User.name, User.id, User.created_at, live).outerjoin(ApiToken)
                         .group_by(User.id).order_by(User.name)).all()
    for name, uid, created, n in rows:
        print(f"{name:<30} {uid}  created {created:%Y-%m-%d %H:%M}  {n} live token{'' if n == 1 else 's'}")
    print(f"{len(rows)} user{'' if len(rows) == 1 else 's'}", file=sys.stderr)
    return 0


def _tokens_or_revoke(a) -> int:
    from sqlalchemy import select, update

    from db.models import ApiToken, User, utcnow
    from db.session import session_scope

    with session_scope() as s:
        uid = s.scalar(select(User.id).where(User.name == a.name))
        if uid is None:
            print(f"error: no user {a.name!r}", file=sys.stderr)
            return 2
        if a.action == "tokens":
            for prefix, created, revoked in s.execute(select(ApiToken.prefix, ApiToken.created_at, ApiToken.revoked_at)
                                                      .where(ApiToken.user_id == uid).order_by(ApiToken.created_at)):
                state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "live"
                print(f"{prefix}…  created {created:%Y-%m-%d %H:%M}  {state}")
            return 0
        q = update(ApiToken).where(ApiToken.user_id == uid, ApiToken.revoked_at.is_(None))
        if a.prefix:
            q = q.where(ApiToken.prefix == a.prefix[:10])
        n = s.execute(q.values(revoked_at=utcnow())).rowcount
    print(f"revoked {n} token{'' if n == 1 else 's'} of {a.name} (API processes notice within "
          f"WARDROBE_TOKEN_CACHE_SECONDS)", file=sys.stderr)
    return 0 if n else 1


def _create_user(name: str) -> int:
    from sqlalchemy.exc import IntegrityError

    from db.session import session_scope
    from db.users import create_user

    try:
        with session_scope() as s:
            user, token = create_user(s, name)
            uid = user.id
    except (ValueError, IntegrityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(token)
    print(f"created user {name} ({uid}); the token above is shown once", file=sys.stderr)
    return 0


def _new_token(name: str, revoke_others: bool) -> int:
    from sqlalchemy import select, update

    from db.models import ApiToken, User, utcnow
    from db.session import session_scope
    from db.users import issue_token

    with session_scope() as s:
        uid = s.scalar(select(User.id).where(User.name == name))
        if uid is None:
            print(f"error: no user {name!r}", file=sys.stderr)
            return 2
        if revoke_others:
            s.execute(update(ApiToken).where(ApiToken.user_id == uid, ApiToken.revoked_at.is_(None))
                      .values(revoked_at=utcnow()))
        print(issue_token(s, uid))
    return 0
