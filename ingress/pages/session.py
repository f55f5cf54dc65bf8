"""Sign-in for the customer's pages: the control panel's short-lived link, the form that completes
it in the browser that opened it, the session cookie and the CSRF token of every form. Pure
functions of the secrets and a clock, tested without a server (what is kept of links used and
sessions ended lives in db/ui_sessions.py).

The panel sends the customer to `/ui/accesso?u=<username>&exp=<unix seconds>&sig=<hex>`, where
`sig` is HMAC-SHA256 with `PANEL_SECRET`; the page checks it and shows a form that signs in with
a POST, bound to a nonce cookie it sets first (so a link opened elsewhere signs nobody in); the
POST sets a session cookie signed the same way. Each value signs its own purpose first
(`ui-link`, `ui-sign-in`, `ui-session`, `ui-csrf`), so a signature made for one can never pass as
another, nor as a signed API request. `PANEL_SECRET` may hold two values during a rotation
("current,previous"): each check accepts either, and everything new is signed with the current.
"""

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

from pydantic import TypeAdapter, ValidationError

from renewals.links import mac, signed_by_any
from renewals.signing import UNIX_SECONDS
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


# One secret, or the values of a rotation with the one to sign with first.
Secrets = str | Sequence[str]


class SignInError(Exception):
    """Why a sign-in link was refused; never says what the right signature would be."""


def digest(value: str) -> str:
    """What PostgreSQL keeps of a link's signature or a session's id: a copy of the table
    signs nobody in."""
    return hashlib.sha256(value.encode()).hexdigest()


# ---------------------------------------------------------------------------- the panel's link


def sign_in_query(secret: str, username: str, now: float, seconds: int = LINK_SECONDS) -> dict[str, str]:
    expires = str(int(now) + seconds)
    return {"u": username, "exp": expires, "sig": mac(secret, "ui-link", username, expires)}


def sign_in_link(secret: str, username: str, now: float, seconds: int = LINK_SECONDS) -> str:
    """What the control panel redirects the customer to (a path; the panel adds the host)."""
    return f"{SIGN_IN_PATH}?{urlencode(sign_in_query(secret, username, now, seconds))}"


def check_sign_in(secret: Secrets, username: str | None, expires: str | None, signature: str | None, now: float) -> str:
    """The username the link signs in, or SignInError naming what is wrong with it."""
    if not username or not expires or not signature:
        raise SignInError("the link lacks u, exp or sig")
    try:
        _USERNAME.validate_python(username)
    except ValidationError:
        raise SignInError("u is not a username") from None
    if not UNIX_SECONDS.match(expires):
        raise SignInError("exp must be unix seconds")
    if not _HEX64.match(signature):
        raise SignInError("sig must be 64 hex digits")
    if not signed_by_any(secret, signature, "ui-link", username, expires):
        raise SignInError("sig does not match u and exp")
    if int(expires) < now - CLOCK_SKEW_SECONDS:
        raise SignInError("the link has expired")
    if int(expires) > now + LINK_SECONDS + CLOCK_SKEW_SECONDS:
        raise SignInError(f"the link must expire within {LINK_SECONDS} s of being made")
    return username


# ---------------------------------------------------------------------------- completing it here


def new_nonce() -> str:
    return secrets.token_hex(16)


def sign_in_token(secret: str, nonce: str, username: str, expires: str, signature: str) -> str:
    """The sign-in form's token: this link, completed only by the browser holding `nonce` (the
    cookie the link's page set), so a link or a form posted from elsewhere signs nobody in."""
    return mac(secret, "ui-sign-in", nonce, username, expires, signature)


def accepts_sign_in(
    secret: Secrets, nonce: str | None, token: str | None, username: str, expires: str, signature: str
) -> bool:
    if not nonce or not token:
        return False
    return signed_by_any(secret, token, "ui-sign-in", nonce, username, expires, signature)


# ---------------------------------------------------------------------------- the session cookie


Role = Literal["customer", "backoffice"]


@dataclass(frozen=True)
class Session:
    """Who is signed in until when: a customer (the username), or the dev payments page's back
    office. The role is signed too, so a customer's cookie never opens the back office. The nonce
    is the session's id (PostgreSQL knows whether it was ended) and ties the CSRF token to this
    sign-in: a token from another session is worthless."""

    role: Role
    subject: str
    expires: int
    nonce: str

    def csrf(self, secret: str) -> str:
        return mac(secret, "ui-csrf", self.role, self.subject, self.nonce)

    def accepts(self, secret: Secrets, token: str | None) -> bool:
        return bool(token) and signed_by_any(secret, token or "", "ui-csrf", self.role, self.subject, self.nonce)

    @property
    def key(self) -> str:
        """The session's row in PostgreSQL (db/ui_sessions.py)."""
        return digest(f"{self.role}|{self.nonce}")


def new_session(role: Role, subject: str, now: float, seconds: int = SESSION_SECONDS) -> Session:
    return Session(role, subject, int(now) + seconds, secrets.token_hex(16))


def session_cookie(secret: str, session: Session) -> str:
    """`subject|expires|nonce|sig`: `|` is in no username, and needs no quoting in a cookie."""
    fields = (session.subject, str(session.expires), session.nonce)
    return "|".join((*fields, mac(secret, f"ui-session-{session.role}", *fields)))


def read_session(secret: Secrets, role: Role, cookie: str | None, now: float) -> Session | None:
    """The `role` session a cookie carries, or None when it is absent, forged, expired or another
    role's. Whether it was ended since is PostgreSQL's to say (db/ui_sessions.py)."""
    if not cookie or cookie.count("|") != 3:
        return None
    subject, expires, nonce, signature = cookie.split("|")
    if not UNIX_SECONDS.match(expires) or not signed_by_any(
        secret, signature, f"ui-session-{role}", subject, expires, nonce
    ):
        return None
    if int(expires) <= now:
        return None
    return Session(role, subject, int(expires), nonce)
