"""Request signing, as Stripe signs its webhooks (DESIGN.md §5).

`X-Timestamp: <unix seconds>` and `X-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`
with the endpoint's own secret; a timestamp more than 5 minutes from our clock is refused, so a
captured request cannot be replayed later. Compared in constant time.

Rotation without downtime: an endpoint may hold two secrets, the current and the previous one
(`PANEL_SECRET=current,previous`); a request signed with either is accepted, and we sign with
the first. Once every sender has the new value, the previous one is dropped from the list.
"""

import hashlib
import hmac
import re
from collections.abc import Sequence
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


def verify(secrets: str | Sequence[str], timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Accept a signature made with any of `secrets` (one secret, or the current and the previous)."""
    if not timestamp or not signature:
        raise SignatureError("missing X-Timestamp or X-Signature header")
    if not _UNIX_SECONDS.match(timestamp):
        raise SignatureError("X-Timestamp must be unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureError("X-Timestamp is more than 5 minutes from the server's clock")
    given = signature.encode("utf-8", "replace")
    # Every candidate is compared, whichever matches: the time taken says nothing of which one did.
    matches = [
        hmac.compare_digest(sign(secret, int(timestamp), body).encode(), given)
        for secret in ([secrets] if isinstance(secrets, str) else secrets)
    ]
    if not any(matches):
        raise SignatureError("X-Signature does not match the body and timestamp")
