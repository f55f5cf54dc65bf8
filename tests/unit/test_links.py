"""The email links' signature (P20): what a link that was not made here, or was altered, gets."""

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from renewals.links import link_refusal, signed_link

SECRETS = ("dev-panel-secret",)
URL = "https://rinnovi.example.it/ui/ordini/FE-2026-000123/pagamento"


def parts(link: str) -> tuple[str, str, str, str]:
    query = {name: values[0] for name, values in parse_qs(urlsplit(link).query).items()}
    return urlsplit(link).path, query["u"], query["e"], query["s"]


def test_p20_a_link_made_here_is_accepted_until_it_expires():
    until = datetime(2030, 1, 1, tzinfo=UTC)
    path, user, expires, signature = parts(signed_link(SECRETS[0], URL, "acme", until))
    assert link_refusal(SECRETS, path, user, expires, signature, until.timestamp() - 1) is None
    assert link_refusal(SECRETS, path, user, expires, signature, until.timestamp() + 1) == "the link has expired"


@pytest.mark.parametrize("expires", ["²", "1e9", "-1", " 1", "1234567890123", ""])
def test_p20_an_expiry_that_is_not_unix_seconds_is_refused_not_an_error(expires):
    path, user, _, signature = parts(signed_link(SECRETS[0], URL, "acme", datetime(2030, 1, 1, tzinfo=UTC)))
    assert link_refusal(SECRETS, path, user, expires, signature, 0) == "the link is not valid"
