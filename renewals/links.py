"""Links in emails that sign the customer in to one page of their own (P20: a declined charge's
payment choices): HMAC-SHA256 with the panel's secret over the purpose, the username, the page's
path and the expiry, so a link opens that page for that customer until then and nothing else.
The mailer makes them (activities/mail.py), the customer pages check them.

`mac` and `signed_by_any` are also the customer pages' own (ingress/pages/session.py: the panel's
links, the sign-in token, CSRF, the session cookie), each under its own purpose."""

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlencode, urlsplit

from renewals.signing import UNIX_SECONDS

PURPOSE = "email-link"


def mac(secret: str, purpose: str, *parts: str) -> str:
    """HMAC-SHA256 of the purpose and the parts, one per line (none of them holds a newline)."""
    message = "\n".join((purpose, *parts)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_by_any(secrets: str | Sequence[str], given: str, purpose: str, *parts: str) -> bool:
    """Whether one of `secrets` (the current and the previous during a rotation) made `given`.
    Every value is tried (no early exit): the time taken says nothing about which one matched."""
    values = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    matches = [
        hmac.compare_digest(mac(one, purpose, *parts).encode(), given.encode("utf-8", "replace")) for one in values
    ]
    return any(matches)


def signed_link(secret: str, url: str, username: str, until: datetime) -> str:
    """`url?u=…&e=…&s=…`; the signature covers the URL's path, not its host (a proxy may rewrite it)."""
    expires = int(until.timestamp())
    signature = mac(secret, PURPOSE, username, urlsplit(url).path, str(expires))
    return f"{url}?{urlencode({'u': username, 'e': expires, 's': signature})}"


def link_refusal(
    secrets: Sequence[str], path: str, username: str, expires: str, signature: str, now: float
) -> str | None:
    """None for a link one of `secrets` signed for this path and customer and not yet expired;
    otherwise why it is refused (said to the customer in one line)."""
    if not UNIX_SECONDS.match(expires):
        return "the link is not valid"
    if int(expires) < now:
        return "the link has expired"
    if not signed_by_any(secrets, signature, PURPOSE, username, path, str(int(expires))):
        return "the link is not valid"
    return None
