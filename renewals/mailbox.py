"""Who an email goes to, as the mail library will build it: the one parser that decides whether an
address can be mailed, used at import (ServiceRecord) and by the mailer (activities/mail.py).

An address that passed import but that `email.headerregistry.Address` refuses (consecutive dots,
a dot at either end of the local part, a trailing dot in the domain, a colon, a non-ASCII local
part) would fail every email of its renewal for ever; so the same parser refuses it first.
"""

import re
from email.errors import HeaderParseError, MessageError
from email.headerregistry import Address


def sendable(text: str) -> str:
    """Text from the data as it can go out in UTF-8: a lone surrogate (legal in a Python str,
    and in JSON's \\u escapes) becomes "?" instead of failing the email for ever."""
    return text.encode("utf-8", "replace").decode("utf-8")


def one_line(text: str) -> str:
    """Control characters (CR, LF, ...) to spaces: nothing from the data can start a header line."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", sendable(text)).strip()


def display_name(name: str) -> str:
    """A holder name fit for the To line: one line, and without the characters that, once a long
    or non-ASCII header is folded, would read as more addresses ("Rossi, evil@example.com")."""
    return re.sub(r"\s+", " ", re.sub(r'[",;:<>@()\[\]\\]', " ", one_line(name))).strip()


def recipient(name: str, address: str) -> Address:
    """The To header's value; ValueError (naming the rule) when the address cannot be mailed."""
    spec = one_line(address)
    if not spec.isascii():
        # Our relay path does not negotiate SMTPUTF8: a non-ASCII address would be refused at send.
        raise ValueError(f"email address {spec!r} must be ASCII (no SMTPUTF8 on our mail path)")
    try:
        built = Address(display_name=display_name(name), addr_spec=spec)
    except (MessageError, HeaderParseError, ValueError, IndexError) as error:
        raise ValueError(f"email address {spec!r} cannot be mailed: {error}") from None
    if built.addr_spec != spec:
        raise ValueError(f"email address {spec!r} cannot be mailed: it reads as {built.addr_spec!r}")
    return built


def check_address(address: str) -> None:
    recipient("", address)
