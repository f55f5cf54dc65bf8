"""The holder's billing data and the seller's (P17): check digits, formats, Latin-1, and which
fields a company or a person needs; every error names the field and the rule."""

import pytest
from pydantic import ValidationError

from renewals.billing import BillingData, Seller
from starter import CliError, validate_services
from tests.conftest import ADDRESS, company_billing, person_billing


def problems(**fields) -> str:
    base = company_billing().model_dump(exclude_none=True)
    with pytest.raises(ValidationError) as raised:
        BillingData.model_validate({**base, **fields})
    return "\n".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in raised.value.errors(include_url=False)
    )


def test_p17_valid_company_and_person_are_normalised():
    company = company_billing(recipient_code="k7qw2xz", address={**ADDRESS, "provincia": "rm"})
    assert company.recipient_code == "K7QW2XZ" and company.address.provincia == "RM"
    assert company.delivery_code == "K7QW2XZ" and company.display_name == "Rossi Servizi S.r.l."
    person = person_billing(tax_code="bnclcu90a41f205z")
    assert person.tax_code == "BNCLCU90A41F205Z" and person.delivery_code == "0000000"
    assert person.display_name == "Lucia Bianchi"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"vat_number": "09876540016"}, "vat_number: Value error, must be an Italian Partita IVA"),
        ({"vat_number": "0987654001"}, "vat_number: Value error, must be an Italian Partita IVA of 11 digits"),
        ({"tax_code": "BNCLCU90A41F205X"}, "tax_code: Value error, must be a Codice Fiscale"),
        ({"address": {**ADDRESS, "cap": "0184"}}, "address.cap: String should match pattern '^[0-9]{5}$'"),
        ({"address": {**ADDRESS, "provincia": "Roma"}}, "address.provincia: String should match pattern"),
        ({"address": {**ADDRESS, "country": "FR"}}, "address.country: Input should be 'IT'"),
        ({"address": {**ADDRESS, "comune": "Łódź"}}, "address.comune: Value error, must use Latin-1 characters only"),
        ({"company_name": "x" * 81}, "company_name: String should have at most 80 characters"),
        ({"company_name": "Rossi\nS.r.l."}, "company_name: Value error, must not contain control characters"),
        ({"recipient_code": "ABC12"}, "recipient_code: String should match pattern '^[A-Z0-9]{7}$'"),
        ({"pec": "not-an-address"}, "pec: String should match pattern"),
        ({"pec": ".rossi@pec.example.it"}, "pec: String should match pattern"),  # the schema refuses it
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_p17_each_bad_field_is_named_with_its_rule(fields, expected):
    assert expected in problems(**fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"company_name": None}, "company_name is required for a company holder"),
        ({"first_name": "Mario"}, "first_name and last_name are for a person holder"),
        ({"vat_number": None}, "a company needs vat_number (Partita IVA) or, without one, tax_code"),
        ({"tax_code": "BNCLCU90A41F205Z"}, "tax_code of a company is numeric (11 digits)"),
        ({"recipient_code": None}, "recipient_code (CodiceDestinatario, 7 characters) or pec is required"),
        ({"pec": "a@pec.example.it"}, "give recipient_code or pec, not both"),
    ],
)
def test_p17_company_rules(fields, expected):
    assert expected in problems(**fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"last_name": None}, "first_name and last_name are required for a person holder"),
        ({"company_name": "Bianchi S.r.l."}, "company_name is for a company holder"),
        ({"tax_code": None}, "a person needs tax_code (Codice Fiscale) or vat_number (Partita IVA)"),
        ({"tax_code": "09876540015"}, "tax_code of a person is the 16-character Codice Fiscale"),
    ],
)
def test_p17_person_rules(fields, expected):
    base = person_billing().model_dump(exclude_none=True)
    with pytest.raises(ValidationError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        BillingData.model_validate({**base, **fields})


def test_p17_a_professional_person_with_partita_iva_and_a_consumer_in_the_fiscal_drawer():
    assert person_billing(tax_code=None, vat_number="09876540015", pec=None, recipient_code="ABCDEF1").vat_number
    assert person_billing(pec=None, recipient_code="0000000").delivery_code == "0000000"
    assert company_billing(recipient_code="0000000", pec="amministrazione@pec.rossi.it").pec


def test_p17_seller_iban_and_regime_are_checked():
    good = {"name": "Renewals S.p.A.", "vat_number": "12345670017", "address": ADDRESS}
    assert Seller(**good, iban="it60 x054 2811 1010 0000 0123 456").iban == "IT60X0542811101000000123456"
    with pytest.raises(ValidationError, match="iban\n  Value error, must be an IBAN with valid check digits"):
        Seller(**good, iban="IT61X0542811101000000123456")
    with pytest.raises(ValidationError, match="tax_regime"):
        Seller(**good, iban="IT60X0542811101000000123456", tax_regime="RF03")


def test_p17_services_import_reports_bad_billing_fields_by_record_and_field():
    good = {
        "username": "acme",
        "holder_name": "Acme",
        "holder_email": "acme@example.com",
        "purchased_on": "2025-01-01",
        "expires_on": "2026-01-01",
        "auto_renew": False,
        "storage_quota_mb": 1000,
        "storage_used_mb": 10,
    }
    billing = company_billing().model_dump(mode="json", exclude_none=True)
    records = [
        {**good, "billing": billing},
        {
            **good,
            "username": "bad",
            "billing": {**billing, "vat_number": "12345678901", "address": {**ADDRESS, "cap": "1"}},
        },
        {**good, "username": "old"},  # no billing data: still a valid record
    ]
    import json

    with pytest.raises(CliError) as raised:
        validate_services(json.dumps(records).encode())
    message = str(raised.value)
    assert "record 1: billing.vat_number: Value error, must be an Italian Partita IVA" in message
    assert "record 1: billing.address.cap: String should match pattern" in message
    assert "record 0" not in message and "record 2" not in message
    imported = validate_services(json.dumps([records[0], records[2]]).encode())
    assert imported[0].billing == company_billing() and imported[1].billing is None
