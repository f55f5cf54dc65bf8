"""Who an invoice is for and who issues it (P17): the holder's billing data, kept on the service
record and checked at `services import`, and the seller's, from configuration.

Everything is checked here as FatturaPA and SdI need it — check digits of Partita IVA and Codice
Fiscale (python-stdnum), CAP and provincia formats, Latin-1 text within the schema's lengths — so a
record that passed import always makes an invoice that validates. Errors name the field and the rule.

Only Italian holders (country IT): a renewal always charges Italian VAT at 22 % (P6), which is
what an Italian buyer pays; a foreign buyer would need reverse charge (nature N2.1/N7) instead.
"""

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StringConstraints, model_validator
from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError as NumberError
from stdnum.it import codicefiscale, iva

HolderType = Literal["company", "person"]
# The regimes FatturaPA 1.2.2 lists (RF03 was withdrawn); RF01 is the ordinary one.
TaxRegime = Literal[
    "RF01", "RF02", "RF04", "RF05", "RF06", "RF07", "RF08", "RF09", "RF10",
    "RF11", "RF12", "RF13", "RF14", "RF15", "RF16", "RF17", "RF18", "RF19",
]  # fmt: skip
# CodiceDestinatario for "no channel": SdI leaves the invoice in the buyer's fiscal drawer
# (consumers), or delivers it to the PEC address when one is given.
NO_RECIPIENT_CODE = "0000000"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _latin1(value: str) -> str:
    # The schema's text types are [\p{IsBasicLatin}\p{IsLatin-1Supplement}]: "Łódź" or an emoji
    # would make an invoice SdI refuses, so it is refused here, at import.
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        bad = next(ch for ch in value if ord(ch) > 0xFF)
        raise ValueError(f"must use Latin-1 characters only (FatturaPA text), got {bad!r}") from None
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (CR, LF, tab, ...)")
    return value


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper().replace(" ", "") if isinstance(value, str) else value


# Latin-1 text of 1..N characters: the schema's String60LatinType and String80LatinType.
Text60 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60), AfterValidator(_latin1)]
Text80 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80), AfterValidator(_latin1)]


def _partita_iva(value: str) -> str:
    try:
        return str(iva.validate(value))
    except NumberError as error:
        raise ValueError(f"must be an Italian Partita IVA of 11 digits with a valid check digit ({error})") from None


def _codice_fiscale(value: str) -> str:
    # 16 characters for a person; a company's is numeric, 11 digits, like a Partita IVA.
    try:
        return str(iva.validate(value) if value.isdigit() else codicefiscale.validate(value))
    except NumberError as error:
        raise ValueError(
            f"must be a Codice Fiscale (16 characters for a person, 11 digits for a company) "
            f"with a valid check character ({error})"
        ) from None


def _iban(value: str) -> str:
    try:
        return str(stdnum_iban.validate(value))
    except NumberError as error:
        raise ValueError(f"must be an IBAN with valid check digits ({error})") from None


PartitaIva = Annotated[str, BeforeValidator(_upper), AfterValidator(_partita_iva)]
CodiceFiscale = Annotated[str, BeforeValidator(_upper), AfterValidator(_codice_fiscale)]
Iban = Annotated[str, BeforeValidator(_upper), AfterValidator(_iban)]
Cap = Annotated[str, BeforeValidator(_strip), StringConstraints(pattern=r"^[0-9]{5}$")]
Provincia = Annotated[str, BeforeValidator(_upper), StringConstraints(pattern=r"^[A-Z]{2}$")]
RecipientCode = Annotated[str, BeforeValidator(_upper), StringConstraints(pattern=r"^[A-Z0-9]{7}$")]
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
Pec = Annotated[
    str,
    BeforeValidator(_strip),
    # A dot-atom local part, as the schema's EmailType: no leading, trailing or double dot.
    StringConstraints(pattern=rf"^{_ATOM}(\.{_ATOM})*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$", max_length=256),
]


class _Strict(BaseModel):
    """Unknown fields are errors (a typo is not a silent default); frozen, like the data it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Address(_Strict):
    """Sede: street with house number, CAP (5 digits), comune, provincia (2 letters), country."""

    street: Text60
    cap: Cap
    comune: Text60
    provincia: Provincia
    country: Literal["IT"] = "IT"


class BillingData(_Strict):
    """The holder as the invoice names them (CessionarioCommittente) and where SdI delivers it.

    A company has `company_name` and a Partita IVA (or, for a body without one, its numeric Codice
    Fiscale); a person has `first_name` and `last_name` and a Codice Fiscale (or a Partita IVA, as
    a professional). Delivery: `recipient_code` (CodiceDestinatario, 7 characters) or `pec`;
    `recipient_code` "0000000" alone leaves the invoice in the holder's fiscal drawer (consumers).
    """

    holder_type: HolderType
    company_name: Text80 | None = None
    first_name: Text60 | None = None
    last_name: Text60 | None = None
    vat_number: PartitaIva | None = None
    tax_code: CodiceFiscale | None = None
    address: Address
    recipient_code: RecipientCode | None = None
    pec: Pec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "BillingData":
        if self.holder_type == "company":
            if self.company_name is None:
                raise ValueError("company_name is required for a company holder")
            if self.first_name is not None or self.last_name is not None:
                raise ValueError("first_name and last_name are for a person holder; a company has company_name")
            if self.tax_code is not None and not self.tax_code.isdigit():
                raise ValueError("tax_code of a company is numeric (11 digits), got a person's 16-character code")
            if self.vat_number is None and self.tax_code is None:
                raise ValueError("a company needs vat_number (Partita IVA) or, without one, tax_code")
        else:
            if self.first_name is None or self.last_name is None:
                raise ValueError("first_name and last_name are required for a person holder")
            if self.company_name is not None:
                raise ValueError("company_name is for a company holder; a person has first_name and last_name")
            if self.tax_code is not None and self.tax_code.isdigit():
                raise ValueError("tax_code of a person is the 16-character Codice Fiscale, got 11 digits")
            if self.vat_number is None and self.tax_code is None:
                raise ValueError("a person needs tax_code (Codice Fiscale) or vat_number (Partita IVA)")
        if self.recipient_code is None and self.pec is None:
            raise ValueError(
                "recipient_code (CodiceDestinatario, 7 characters) or pec is required; "
                f"recipient_code {NO_RECIPIENT_CODE!r} for a holder who receives in the fiscal drawer"
            )
        if self.pec is not None and self.recipient_code not in (None, NO_RECIPIENT_CODE):
            raise ValueError(
                f"give recipient_code or pec, not both: SdI delivers to the PEC only with code {NO_RECIPIENT_CODE}"
            )
        return self

    @property
    def delivery_code(self) -> str:
        return self.recipient_code or NO_RECIPIENT_CODE

    @property
    def display_name(self) -> str:
        return self.company_name or f"{self.first_name} {self.last_name}"


class Seller(_Strict):
    """The provider issuing the invoice (CedentePrestatore), from configuration (SELLER_*)."""

    name: Text80
    vat_number: PartitaIva
    tax_code: CodiceFiscale | None = None
    tax_regime: TaxRegime = "RF01"
    address: Address
    iban: Iban
