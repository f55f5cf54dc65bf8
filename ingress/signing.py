"""Request signing, as Stripe signs its webhooks (DESIGN.md §5).

`X-Timestamp: <unix seconds>` and `X-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`
with the endpoint's own secret; a timestamp more than 5 minutes from our clock is refused, so a
captured request cannot be replayed later. Compared in constant time.
"""

import hashlib
import hmac
import re
from urllib.parse import unquote

TOLERANCE_SECONDS = 300
# ASCII digits only: str.isdigit() also takes '²', which int() then refuses.
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}\Z")


class SignatureError(Exception):
    """Why a request's signature was refused; never says what the right one would be."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def read_payload(method: str, path: str) -> bytes:
    """What a bodiless request (a read) signs in place of its body: the method and the decoded
    path, so a captured signature cannot read another username's page."""
    return f"{method} {unquote(path)}".encode()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"X-Timestamp": str(timestamp), "X-Signature": sign(secret, timestamp, body)}


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    if not timestamp or not signature:
        raise SignatureError("missing X-Timestamp or X-Signature header")
    if not _UNIX_SECONDS.match(timestamp):
        raise SignatureError("X-Timestamp must be unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureError("X-Timestamp is more than 5 minutes from the server's clock")
    expected = sign(secret, int(timestamp), body)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise SignatureError("X-Signature does not match the body and timestamp")
