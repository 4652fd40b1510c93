"""The webhook sender: signs an outbox row (db.webhooks) per Standard Webhooks 1.0 and POSTs it.

Headers: webhook-id (the delivery's id, the same on every retry: receivers dedupe on it),
webhook-timestamp (seconds, this attempt's) and webhook-signature, `v1,` and the base64 HMAC-SHA256
of `id.timestamp.body` under the endpoint's secret (whsec_ + base64 of the key).

No redirects are followed, no proxy from the environment is used, and every connection goes to an
address checked as it is made (core.urlguard): a host that resolved to a public address when it was
registered and resolves to 127.0.0.1 now is refused (DNS rebinding), unless
WARDROBE_WEBHOOK_ALLOW_PRIVATE is on.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from typing import Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection

from core.config import Settings
from core.logs import fields
from core.urlguard import Unresolvable, UrlRefused, split_url, vetted_addresses
from db import webhooks
from db.session import session_scope

log = logging.getLogger("wardrobe.webhooks")

USER_AGENT = "wardrobe-webhooks/1"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' v1 signature of one attempt."""
    key = base64.b64decode(secret.removeprefix(webhooks.SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# --- connections only to vetted addresses ------------------------------------------------------------------------------

class _Vetted:
    """urllib3's connection, but it resolves the host itself and connects only to addresses
    core.urlguard allows; TLS still checks the certificate against the host name."""

    allow_private = False
    opened: list | None = None  # every socket made, for the attempt's deadline to cut

    def _new_conn(self) -> socket.socket:
        last: OSError | None = None
        for address in vetted_addresses(self._dns_host, self.port, self.allow_private):
            try:
                sock = connection.create_connection((address, self.port), self.timeout,
                                                    source_address=self.source_address,
                                                    socket_options=self.socket_options)
                if self.opened is not None:
                    self.opened.append(sock)
                return sock
            except socket.timeout as e:
                raise ConnectTimeoutError(self, f"connection to {self.host} timed out ({self.timeout} s)") from e
            except OSError as e:
                last = e
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}")


def _adapter(allow_private: bool, opened: list | None = None) -> HTTPAdapter:
    flag = {"allow_private": allow_private, "opened": opened}
    http_conn = type("VettedHTTPConnection", (_Vetted, HTTPConnection), flag)
    https_conn = type("VettedHTTPSConnection", (_Vetted, HTTPSConnection), flag)
    pools = {"http": type("VettedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
             "https": type("VettedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})}

    class VettedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

    return VettedAdapter(max_retries=0)


def _session(allow_private: bool, opened: list | None = None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no HTTP(S)_PROXY from the environment: a proxy would connect where we did not check
    adapter = _adapter(allow_private, opened)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def _retry_after(resp: requests.Response) -> float | None:
    raw = resp.headers.get("Retry-After", "")
    return float(raw) if raw.strip().isdigit() else None


def post(url: str, secret: str, msg_id: str, body: bytes, settings: Settings,
         private_ok: bool = False) -> webhooks.Outcome:
    """One signed POST; what came of it. Never raises for anything the endpoint or the network does.
    `private_ok`: the endpoint was registered at a private address while the API allowed them."""
    ts = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": msg_id,
               "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}
    t0 = time.monotonic()

    def ms() -> int:
        return int((time.monotonic() - t0) * 1000)

    # requests' timeout bounds each read, not the attempt: an endpoint trickling its answer a byte at
    # a time would hold this worker for as long as it liked. At the deadline its sockets are shut.
    opened: list[socket.socket] = []
    cut = threading.Event()

    def shut() -> None:
        cut.set()
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    deadline = threading.Timer(settings.webhook_timeout, shut)
    deadline.daemon = True
    too_slow = f"no answer within {settings.webhook_timeout:g} s"
    try:
        split_url(url)  # http(s) only, even for a row written by hand
        with _session(settings.webhook_allow_private or private_ok, opened) as s:
            deadline.start()
            resp = s.post(url, data=body, headers=headers, timeout=settings.webhook_timeout,
                          allow_redirects=False, stream=True)
            resp.close()  # the answer's body is not read: only its status counts
    except Unresolvable as e:  # DNS may come back: retried
        return webhooks.Outcome(None, ms(), str(e))
    except UrlRefused as e:
        return webhooks.Outcome(None, ms(), str(e), refused=True)
    except requests.Timeout:
        return webhooks.Outcome(None, ms(), too_slow)
    except requests.RequestException as e:
        return webhooks.Outcome(None, ms(), too_slow if cut.is_set() else f"{type(e).__name__}: {e}")
    finally:
        deadline.cancel()
    code = resp.status_code
    error = None if 200 <= code < 300 else f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
    return webhooks.Outcome(code, ms(), error, retry_after=_retry_after(resp) if code in (429, 503) else None)


def deliver(did: uuid.UUID, settings: Settings) -> str | None:
    """Send one outbox row if it is due, and record the attempt; returns the delivery's status after
    it (None: nothing was sent). The row stays locked while the endpoint is called."""
    with session_scope() as s:
        claimed = webhooks.claim(s, did)
        if claimed is None:
            return None
        d, ep = claimed
        body = json.dumps(d.payload, separators=(",", ":"), ensure_ascii=False).encode()
        out = post(ep.url, ep.secret, str(d.id), body, settings, private_ok=ep.private_ok)
        status = webhooks.record(s, d, ep, out, webhooks.retry_schedule(settings))
        job_id = str(d.job_id) if d.job_id else None
    level = logging.INFO if out.error is None else logging.WARNING
    log.log(level, "webhook %s %s to endpoint %s, attempt %d: %s (%d ms) -> %s", d.id, d.event_type, ep.id, d.attempts,
            out.status_code or out.error, out.duration_ms, status, extra=fields(job_id=job_id, task="webhook"))
    return status


def sweep(settings: Settings, send: Callable[[uuid.UUID], None]) -> int:
    """The beat task's body: send a task message for each due delivery that has none on its way
    (retries, held-back progress, messages lost with the broker), and forget finished ones past
    WARDROBE_WEBHOOK_KEEP_DAYS. Returns how many it sent."""
    with session_scope() as s:
        ids = webhooks.due_deliveries(s, settings)
    for delivery_id in ids:
        try:
            send(delivery_id)
        except Exception as e:  # noqa: BLE001 - the broker is down: the next sweep after requeue_after tries again
            log.warning("could not queue webhook delivery %s: %s: %s", delivery_id, type(e).__name__, e)
            break
    with session_scope() as s:
        webhooks.forget_finished(s, settings.webhook_keep_days)
    return len(ids)
