"""The customer pages' sign-in link, session cookie and CSRF token (ingress/pages/session.py)."""

from urllib.parse import parse_qs, urlsplit

import pytest

from ingress.pages.session import (
    CLOCK_SKEW_SECONDS,
    LINK_SECONDS,
    SignInError,
    accepts_sign_in,
    check_sign_in,
    new_nonce,
    new_session,
    read_session,
    session_cookie,
    sign_in_link,
    sign_in_query,
    sign_in_token,
)
from renewals.signing import sign

SECRET = "panel-unit-secret"
NOW = 1_800_000_000.0


def test_a_link_the_panel_signed_signs_in_its_username():
    link = sign_in_link(SECRET, "demo-active", NOW)
    assert urlsplit(link).path == "/ui/accesso"
    query = {name: values[0] for name, values in parse_qs(urlsplit(link).query).items()}
    assert check_sign_in(SECRET, query["u"], query["exp"], query["sig"], NOW + 10) == "demo-active"


def test_a_link_is_refused_once_expired_allowing_for_clock_skew():
    query = sign_in_query(SECRET, "demo-active", NOW)
    assert check_sign_in(SECRET, query["u"], query["exp"], query["sig"], NOW + LINK_SECONDS + CLOCK_SKEW_SECONDS)
    with pytest.raises(SignInError, match="expired"):
        check_sign_in(SECRET, query["u"], query["exp"], query["sig"], NOW + LINK_SECONDS + CLOCK_SKEW_SECONDS + 1)


def test_a_link_valid_for_longer_than_a_few_minutes_is_refused():
    query = sign_in_query(SECRET, "demo-active", NOW, seconds=24 * 3600)
    with pytest.raises(SignInError, match="within 300 s"):
        check_sign_in(SECRET, query["u"], query["exp"], query["sig"], NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"u": "demo-other"},  # another customer under the same signature
        {"exp": str(int(NOW) + 200)},  # a later expiry under the same signature
        {"sig": "0" * 64},
    ],
)
def test_a_forged_link_is_refused(change):
    query = {**sign_in_query(SECRET, "demo-active", NOW), **change}
    with pytest.raises(SignInError, match="does not match"):
        check_sign_in(SECRET, query["u"], query["exp"], query["sig"], NOW)


def test_a_link_signed_with_another_secret_is_refused():
    query = sign_in_query("another-secret", "demo-active", NOW)
    with pytest.raises(SignInError, match="does not match"):
        check_sign_in(SECRET, query["u"], query["exp"], query["sig"], NOW)


def test_an_api_signature_cannot_pass_as_a_link():
    # The signed API's HMAC of "<ts>.<body>" with the same secret is not a sign-in signature.
    exp = str(int(NOW) + 100)
    forged = sign(SECRET, int(exp), b"demo-active").removeprefix("sha256=")
    with pytest.raises(SignInError):
        check_sign_in(SECRET, "demo-active", exp, forged, NOW)


@pytest.mark.parametrize(
    ("u", "exp", "sig", "why"),
    [
        (None, "1", "a" * 64, "lacks"),
        ("demo-active", None, "a" * 64, "lacks"),
        ("demo-active", "1", None, "lacks"),
        ("demo active", "1", "a" * 64, "username"),
        ("demo-active", "-1", "a" * 64, "unix seconds"),
        ("demo-active", "1²", "a" * 64, "unix seconds"),
        ("demo-active", "1", "xyz", "64 hex"),
    ],
)
def test_a_malformed_link_is_refused_naming_the_part(u, exp, sig, why):
    with pytest.raises(SignInError, match=why):
        check_sign_in(SECRET, u, exp, sig, NOW)


def test_a_session_cookie_reads_back_until_it_expires():
    session = new_session("customer", "demo-active", NOW, seconds=60)
    cookie = session_cookie(SECRET, session)
    assert read_session(SECRET, "customer", cookie, NOW + 59) == session
    assert read_session(SECRET, "customer", cookie, NOW + 60) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c.replace("demo-active", "demo-other", 1),
        lambda c: c.replace(c.split("|")[1], str(int(c.split("|")[1]) + 3600), 1),
        lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),
        lambda c: c + "|x",
        lambda c: "",
    ],
)
def test_a_tampered_session_cookie_is_no_session(tamper):
    cookie = session_cookie(SECRET, new_session("customer", "demo-active", NOW))
    assert read_session(SECRET, "customer", tamper(cookie), NOW) is None


def test_a_customer_cookie_never_opens_the_back_office():
    # A customer named like the back office's subject still has a customer's signature.
    cookie = session_cookie(SECRET, new_session("customer", "backoffice", NOW))
    assert read_session(SECRET, "backoffice", cookie, NOW) is None
    assert read_session(SECRET, "customer", cookie, NOW) is not None


def test_the_csrf_token_belongs_to_one_session():
    session = new_session("customer", "demo-active", NOW)
    other = new_session("customer", "demo-active", NOW)
    assert session.accepts(SECRET, session.csrf(SECRET))
    assert not session.accepts(SECRET, other.csrf(SECRET))
    assert not session.accepts(SECRET, None)
    assert not session.accepts(SECRET, "")
    assert not session.accepts("another-secret", session.csrf(SECRET))


def test_during_a_rotation_links_sessions_and_tokens_of_either_secret_are_accepted():
    rotation = ("panel-unit-current", SECRET)
    query = sign_in_query(SECRET, "demo-active", NOW)
    assert check_sign_in(rotation, query["u"], query["exp"], query["sig"], NOW) == "demo-active"
    session = new_session("customer", "demo-active", NOW)
    assert read_session(rotation, "customer", session_cookie(SECRET, session), NOW) == session
    assert session.accepts(rotation, session.csrf(SECRET))
    assert read_session("panel-unit-current", "customer", session_cookie(SECRET, session), NOW) is None


def test_the_sign_in_form_is_bound_to_the_nonce_of_the_browser_that_opened_the_link():
    query = sign_in_query(SECRET, "demo-active", NOW)
    link = (query["u"], query["exp"], query["sig"])
    mine, theirs = new_nonce(), new_nonce()
    token = sign_in_token(SECRET, mine, *link)
    assert accepts_sign_in(SECRET, mine, token, *link)
    assert not accepts_sign_in(SECRET, theirs, token, *link)
    assert not accepts_sign_in(SECRET, None, token, *link)
    assert not accepts_sign_in(SECRET, mine, token, "demo-other", *link[1:])
