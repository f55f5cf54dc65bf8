"""Sign-in for the customer's pages: the control panel's short-lived link, the session cookie and
the CSRF token of every form. Pure functions of a secret and a clock, tested without a server.

The panel sends the customer to `/ui/accesso?u=<username>&exp=<unix seconds>&sig=<hex>`, where
`sig` is HMAC-SHA256 with `PANEL_SECRET`; the page checks it and sets a session cookie signed the
same way. Each value signs its own purpose first (`ui-link`, `ui-session`, `ui-csrf`), so a
signature made for one can never pass as another, nor as a signed API request ("<ts>.<body>").
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

from pydantic import TypeAdapter, ValidationError

from renewals.types import Username

# A link is good for this long after the panel made it: long enough for a redirect, too short to
# be worth stealing from a log or a browser history.
LINK_SECONDS = 300
# The clocks of panel and ingress may disagree by this much.
CLOCK_SKEW_SECONDS = 60
# A session lasts this long from sign-in; then the customer comes back through the panel.
SESSION_SECONDS = 3600

SIGN_IN_PATH = "/ui/accesso"
_USERNAME: TypeAdapter[str] = TypeAdapter(Username)
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_DIGITS = re.compile(r"^[0-9]{1,12}\Z")


class SignInError(Exception):
    """Why a sign-in link was refused; never says what the right signature would be."""


def _mac(secret: str, purpose: str, *parts: str) -> str:
    message = "\n".join((purpose, *parts)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


# ---------------------------------------------------------------------------- the panel's link


def sign_in_query(secret: str, username: str, now: float, seconds: int = LINK_SECONDS) -> dict[str, str]:
    expires = str(int(now) + seconds)
    return {"u": username, "exp": expires, "sig": _mac(secret, "ui-link", username, expires)}


def sign_in_link(secret: str, username: str, now: float, seconds: int = LINK_SECONDS) -> str:
    """What the control panel redirects the customer to (a path; the panel adds the host)."""
    return f"{SIGN_IN_PATH}?{urlencode(sign_in_query(secret, username, now, seconds))}"


def check_sign_in(secret: str, username: str | None, expires: str | None, signature: str | None, now: float) -> str:
    """The username the link signs in, or SignInError naming what is wrong with it."""
    if not username or not expires or not signature:
        raise SignInError("the link lacks u, exp or sig")
    try:
        _USERNAME.validate_python(username)
    except ValidationError:
        raise SignInError("u is not a username") from None
    if not _DIGITS.match(expires):
        raise SignInError("exp must be unix seconds")
    if not _HEX64.match(signature):
        raise SignInError("sig must be 64 hex digits")
    if not _same(_mac(secret, "ui-link", username, expires), signature):
        raise SignInError("sig does not match u and exp")
    if int(expires) < now - CLOCK_SKEW_SECONDS:
        raise SignInError("the link has expired")
    if int(expires) > now + LINK_SECONDS + CLOCK_SKEW_SECONDS:
        raise SignInError(f"the link must expire within {LINK_SECONDS} s of being made")
    return username


# ---------------------------------------------------------------------------- the session cookie


Role = Literal["customer", "backoffice"]


@dataclass(frozen=True)
class Session:
    """Who is signed in until when: a customer (the username), or the dev payments page's back
    office. The role is signed too, so a customer's cookie never opens the back office. The nonce
    ties the CSRF token to this sign-in: a token from another session is worthless."""

    role: Role
    subject: str
    expires: int
    nonce: str

    def csrf(self, secret: str) -> str:
        return _mac(secret, "ui-csrf", self.role, self.subject, self.nonce)

    def accepts(self, secret: str, token: str | None) -> bool:
        return bool(token) and _same(self.csrf(secret), token or "")


def new_session(role: Role, subject: str, now: float, seconds: int = SESSION_SECONDS) -> Session:
    return Session(role, subject, int(now) + seconds, secrets.token_hex(16))


def session_cookie(secret: str, session: Session) -> str:
    """`subject|expires|nonce|sig`: `|` is in no username, and needs no quoting in a cookie."""
    fields = (session.subject, str(session.expires), session.nonce)
    return "|".join((*fields, _mac(secret, f"ui-session-{session.role}", *fields)))


def read_session(secret: str, role: Role, cookie: str | None, now: float) -> Session | None:
    """The `role` session a cookie carries, or None when it is absent, forged, expired or another role's."""
    if not cookie or cookie.count("|") != 3:
        return None
    subject, expires, nonce, signature = cookie.split("|")
    if not _DIGITS.match(expires) or not _same(_mac(secret, f"ui-session-{role}", subject, expires, nonce), signature):
        return None
    if int(expires) <= now:
        return None
    return Session(role, subject, int(expires), nonce)
