"""`wardrobe webhooks`: the user's webhook endpoints (list, add, on, off, rm) and what was sent to one."""
from __future__ import annotations

import json
import sys


def _line(ep: dict) -> str:
    state = "on" if ep["enabled"] else f"off ({ep['disabled_reason']})"
    return f"{ep['id']}  {state:<4}  {','.join(ep['events'])}  {ep['url']}"


def cmd_webhooks(a) -> int:
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    action = a.action
    if action == "list":
        hooks = c.all_pages("/v1/webhooks", "webhooks")
        if a.json:
            print(json.dumps(hooks, indent=2))
        elif not hooks:
            print("no webhooks: add one with `wardrobe webhooks add URL`", file=sys.stderr)
        for ep in [] if a.json else hooks:
            print(_line(ep))
        return 0
    if action == "add":
        if not a.target:
            raise SystemExit("usage: wardrobe webhooks add URL [--events job.succeeded,job.failed,...]")
        body = {"url": a.target} | ({"events": a.events.split(",")} if a.events else {})
        ep = c.post("/v1/webhooks", json=body)
        print(json.dumps(ep, indent=2) if a.json else _line(ep))
        print(f"signing secret (shown this once; keep it where your receiver can read it): {ep['secret']}",
              file=sys.stderr)
        return 0
    if not a.target:
        raise SystemExit(f"usage: wardrobe webhooks {action} WEBHOOK_ID")
    path = f"/v1/webhooks/{a.target}"
    if action in ("on", "off"):
        ep = c.patch(path, json={"enabled": action == "on"})
        print(json.dumps(ep, indent=2) if a.json else _line(ep))
    elif action == "rm":
        c.delete(path)
        print(f"deleted webhook {a.target}", file=sys.stderr)
    else:  # deliveries
        rows = c.all_pages(f"{path}/deliveries", "deliveries")
        if a.json:
            print(json.dumps(rows, indent=2))
        for d in [] if a.json else rows:
            last = d["attempts"][-1] if d["attempts"] else None
            answer = "" if last is None else f"  last: {last['status_code'] or last['error']}"
            print(f"{d['id']}  {d['created_at']}  {d['type']:<15}  {d['status']:<9}  "
                  f"{len(d['attempts'])} attempt{'' if len(d['attempts']) == 1 else 's'}{answer}")
    return 0


def add_parsers(sub, client_args) -> None:
    s = sub.add_parser("webhooks", help="your webhook endpoints: list, add URL, on/off/rm ID, deliveries ID")
    s.add_argument("action", nargs="?", default="list", choices=("list", "add", "on", "off", "rm", "deliveries"))
    s.add_argument("target", nargs="?", help="the URL (add) or the webhook's id")
    s.add_argument("--events", help="add: comma-separated, e.g. job.succeeded,job.failed,job.progress "
                                    "(default: the four job end events)")
    s.add_argument("--json", action="store_true", help="print what the API answered")
    client_args(s)
    s.set_defaults(fn=cmd_webhooks)
