"""What the OpenAPI document (api/openapi.yaml) states as a pattern, one regular expression each, and
the checks the routes make with them: a value the document's pattern does not match is refused with a 400
before anything else looks at it, and one it matches is one the route's parser takes (a webhook URL's host
must then still resolve to public addresses: no pattern says that). Each pattern is written once here and
once in the document; tests/test_openapi.py holds the two equal and draws values from each pattern to show
that the route's parser takes every one.

The patterns keep to what ECMA-262 (the document's dialect) and Python read alike: anchors, classes,
groups and counted repeats. `fullmatch` reads `$` as the document does (no trailing newline)."""
from __future__ import annotations

import re

# --- cursors: positions in a list, as the list's `next_cursor` gives them ---------------------------------------
# newest first (jobs, exports, webhooks, deliveries, items): the last row's created_at in microseconds since
# 1970 (UTC) and its id; any such pair is a position in the list, so every match is a cursor
NEWEST_CURSOR = r"^[0-9]{1,17}_[0-9a-f]{32}$"
# the review order (items, needs_review=true): the last row's confidence, exactly as Python writes the float
# (repr: 0.25, 1e-05), and its id; a `c` in front tells it from the other order's
REVIEW_CURSOR = r"^c-?[0-9]{1,3}(\.[0-9]{1,20})?(e-[0-9]{1,3})?_[0-9a-f]{32}$"
ITEMS_CURSOR = r"^([0-9]{1,17}|c-?[0-9]{1,3}(\.[0-9]{1,20})?(e-[0-9]{1,3})?)_[0-9a-f]{32}$"
# a job's photos: the last photo's position in the zip (an int32 column)
ZIP_POSITION = r"^[0-9]{1,9}$"
# an event stream's id: `i` and the newest item's stamp sent, `f` and the newest failed photo's, each in
# microseconds since 1970 (UTC) or nothing for none yet. Letters and digits only: schemathesis draws header
# values from those (and a pattern that needs another character leaves it none to send)
EVENT_ID = r"^i([0-9]{1,17})?f([0-9]{1,17})?$"

# --- headers --------------------------------------------------------------------------------------------------------
# visible ASCII, spaces inside: what any HTTP stack carries unchanged (a space at either end is stripped)
IDEMPOTENCY_KEY = r"^[!-~]([ -~]{0,198}[!-~])?$"

# --- a webhook's URL: http(s), a host (a name, an IPv4 address or a bracketed IPv6 address), an optional port
# up to 65535, then RFC 3986 path, query and fragment characters; no user name or password, nothing outside ASCII
_PCHAR = r"([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_H16 = r"[0-9A-Fa-f]{1,4}"
_IPV6 = (rf"(({_H16}:){{7}}{_H16}|({_H16}:){{1,7}}:|({_H16}:){{1,6}}:{_H16}|({_H16}:){{1,5}}(:{_H16}){{1,2}}"
         rf"|({_H16}:){{1,4}}(:{_H16}){{1,3}}|({_H16}:){{1,3}}(:{_H16}){{1,4}}|({_H16}:){{1,2}}(:{_H16}){{1,5}}"
         rf"|{_H16}:(:{_H16}){{1,6}}|:((:{_H16}){{1,7}}|:))")
_PORT = r"([0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
WEBHOOK_URL = (rf"^[hH][tT][tT][pP][sS]?://(([A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{{2}})+|\[{_IPV6}\])(:{_PORT})?"
               rf"(/{_PCHAR}*)*(\?({_PCHAR}|[/?])*)?(#({_PCHAR}|[/?])*)?$")
WEBHOOK_URL_MAX = 2048

PATTERNS = {name: globals()[name] for name in ("NEWEST_CURSOR", "REVIEW_CURSOR", "ITEMS_CURSOR", "ZIP_POSITION",
                                                 "EVENT_ID", "IDEMPOTENCY_KEY", "WEBHOOK_URL")}
_COMPILED = {p: re.compile(p) for p in PATTERNS.values()}


def matches(pattern: str, value) -> bool:
    """Whether `value` is a string the document's `pattern` matches (the whole of it)."""
    return isinstance(value, str) and _COMPILED[pattern].fullmatch(value) is not None


def whole_number(value) -> int | None:
    """A JSON number that is an integer as JSON Schema counts them (1744 and 1744.0 alike), as an int;
    None for anything else, true and false included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
