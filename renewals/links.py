"""Links in emails that sign the customer in to one page of their own (P20: a declined charge's
payment choices): HMAC-SHA256 with the panel's secret over the purpose, the username, the page's
path and the expiry, so a link opens that page for that customer until then and nothing else.
The mailer makes them (activities/mail.py), the customer pages check them."""

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlencode, urlsplit

PURPOSE = "email-link"


def _mac(secret: str, username: str, path: str, expires: int) -> str:
    message = "\n".join((PURPOSE, username, path, str(expires))).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_link(secret: str, url: str, username: str, until: datetime) -> str:
    """`url?u=…&e=…&s=…`; the signature covers the URL's path, not its host (a proxy may rewrite it)."""
    expires = int(until.timestamp())
    signature = _mac(secret, username, urlsplit(url).path, expires)
    return f"{url}?{urlencode({'u': username, 'e': expires, 's': signature})}"


def link_refusal(
    secrets: Sequence[str], path: str, username: str, expires: str, signature: str, now: float
) -> str | None:
    """None for a link one of `secrets` signed for this path and customer and not yet expired;
    otherwise why it is refused (said to the customer in one line)."""
    if not expires.isdigit() or len(expires) > 12:
        return "the link is not valid"
    if int(expires) < now:
        return "the link has expired"
    given = signature.encode("utf-8", "replace")
    if not any(hmac.compare_digest(_mac(secret, username, path, int(expires)).encode(), given) for secret in secrets):
        return "the link is not valid"
    return None
