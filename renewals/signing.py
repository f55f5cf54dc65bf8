"""Request signing (P21, docs/api.md): what a signature covers, how it is made and checked.

Every signed request carries `X-Timestamp: <unix seconds>`, `X-Nonce: <16 to 64 of A-Z a-z 0-9 _ ->`
and `X-Signature: v2=<hex HMAC-SHA256>`, keyed with the endpoint's own secret, of

    <X-Timestamp>\\n<X-Nonce>\\n<METHOD>\\n<path?query>\\n<Idempotency-Key>\\n<raw body>

the path with its query exactly as sent on the wire (percent-encoding kept, no `?` without a
query), the Idempotency-Key header's value or nothing, a read's body empty. Every field before the
body is one line (none can hold a newline), so no two requests sign the same string. The nonce is
what lets the same request be sent twice on purpose within one second (two reads of one page).

A timestamp more than 5 minutes from our clock is refused; within them the ingress accepts each
signature once (db/signatures.py), so a captured request is worth nothing. Compared in constant time.

The form signed before P21, `sha256=<hex>` of "<timestamp>.<raw body>" (a read: "<timestamp>.GET
<path>", decoded once, no query), covers neither the method, the query nor Idempotency-Key: it is
accepted only while SIGNING_ACCEPT_V1 is on, for the senders still moving to v2.

Rotation without downtime: an endpoint may hold two secrets, the current and the previous one
(`PANEL_SECRET=current,previous`); a request signed with either is accepted, and we sign with
the first. Once every sender has the new value, the previous one is dropped from the list.
"""

import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from secrets import token_urlsafe
from typing import Literal
from urllib.parse import unquote

# P13: a panel event's key, covered by the signature (ingress/idempotency.py reads it).
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_SECONDS = 300
V2_PREFIX = "v2="
V1_PREFIX = "sha256="
# A time in Unix seconds as signed links and requests carry it: ASCII digits only (str.isdigit()
# also takes '²', which int() then refuses).
UNIX_SECONDS = re.compile(r"^[0-9]{1,12}\Z")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}\Z")


class SignatureError(Exception):
    """Why a request's signature was refused; never says what the right one would be."""


@dataclass(frozen=True)
class Received:
    """A request as it reached us: what a signature covers, and the headers that sign it."""

    method: str
    target: str  # the path with its query, as sent
    idempotency_key: str | None
    body: bytes
    timestamp: str | None
    nonce: str | None
    signature: str | None


@dataclass(frozen=True)
class Verified:
    """An accepted signature: its HMAC, remembered until `expires_at` (unix seconds) so that it is
    accepted once; after then its timestamp is refused anyway."""

    digest: bytes
    expires_at: int
    form: Literal["v2", "v1"]


def string_to_sign(
    timestamp: str, nonce: str, method: str, target: str, idempotency_key: str | None, body: bytes
) -> bytes:
    # latin-1: a header's characters are the bytes that came over the wire, one for one.
    head = "\n".join((timestamp, nonce, method, target, idempotency_key or ""))
    return head.encode("latin-1", "replace") + b"\n" + body


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    idempotency_key: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign a request (v2): what every sender of ours uses. `target` is the path
    with its query exactly as it will be sent; `idempotency_key`, when given, is sent too."""
    stamped = str(int(time.time()) if timestamp is None else timestamp)
    nonce = token_urlsafe(18) if nonce is None else nonce
    message = string_to_sign(stamped, nonce, method, target, idempotency_key, body)
    headers = {"X-Timestamp": stamped, "X-Nonce": nonce, "X-Signature": V2_PREFIX + _hmac(secret, message)}
    if idempotency_key is not None:
        headers[IDEMPOTENCY_HEADER] = idempotency_key
    return headers


# ---------------------------------------------------------------------------- the v1 form


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The v1 signature, `sha256=<hex>` of "<timestamp>.<body>"."""
    return f"{V1_PREFIX}{_hmac(secret, f'{timestamp}.'.encode() + body)}"


def read_payload(method: str, path: str) -> bytes:
    """What a v1 read signs in place of its body: the method and the path, decoded once."""
    return f"{method} {unquote(path)}".encode()


# ---------------------------------------------------------------------------- checking


def verify(secrets: str | Sequence[str], received: Received, now: float, *, accept_v1: bool = False) -> Verified:
    """Accept a signature made with any of `secrets` (one secret, or the current and the previous)."""
    timestamp, signature = received.timestamp, received.signature
    if not timestamp or not signature:
        raise SignatureError("missing X-Timestamp or X-Signature header")
    if not UNIX_SECONDS.match(timestamp):
        raise SignatureError("X-Timestamp must be unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureError("X-Timestamp is more than 5 minutes from the server's clock")
    candidates = [secrets] if isinstance(secrets, str) else list(secrets)
    if signature.startswith(V2_PREFIX):
        if not received.nonce or not _NONCE.match(received.nonce):
            raise SignatureError("X-Nonce must be 16 to 64 characters of A-Z a-z 0-9 _ -")
        message = string_to_sign(
            timestamp, received.nonce, received.method, received.target, received.idempotency_key, received.body
        )
        form: Literal["v2", "v1"] = "v2"
        rights = [V2_PREFIX + _hmac(secret, message) for secret in candidates]
    elif signature.startswith(V1_PREFIX):
        if not accept_v1:
            raise SignatureError("the sha256= form is no longer accepted: sign with v2= (P21)")
        signed = received.body
        if received.method == "GET":
            signed = read_payload("GET", received.target.split("?", 1)[0])
        form = "v1"
        rights = [sign(secret, int(timestamp), signed) for secret in candidates]
    else:
        raise SignatureError("X-Signature must be v2=<hex HMAC-SHA256>")
    given = signature.encode("utf-8", "replace")
    # Every candidate is compared, whichever matches: the time taken says nothing of which one did.
    matches = [hmac.compare_digest(right.encode(), given) for right in rights]
    if not any(matches):
        raise SignatureError(
            "X-Signature does not match the request (method, path and query, Idempotency-Key, body) and timestamp"
        )
    digest = bytes.fromhex(signature.split("=", 1)[1])
    return Verified(digest, int(timestamp) + TOLERANCE_SECONDS, form)
