"""A local SdI (Sistema di Interscambio) for `make run`, the demos and the tests, written as a peer
would from the SDICoop specifications, on loopback.

- `POST /SdIRiceviFile` (also `/ricevi_file`): SdI's RiceviFile (SOAP 1.1, `fileSdIAccoglienza`
  with `File` inline in base64). It answers `rispostaSdIRiceviFile`: an increasing
  IdentificativoSdI (never repeated in the same directory, across restarts) and DataOraRicezione,
  or `Errore` EI01 (empty file) or EI02 (made unavailable through the control API). The file is
  taken and checked before the answer is written, so it is processed even when the sender gave up.
- Then, after `notify_delay`, the outcome goes to the transmitter's TrasmissioneFatture endpoint
  (`callback_url`) through a zeep client built from the published WSDL: a NotificaScarto (NS) if a
  check failed, else what a rule says for that buyer, else a RicevutaConsegna (RC). The
  notification is a MessaggiTypes v1.1 file named `<file name>_<RC|MC|NS>_<nnn>.xml`, signed by
  the simulator's key (XAdES-BES, enveloped, rsa-sha256, the certificate in KeyInfo). Delivery is
  retried with backoff, like SdI's, for `retry_for` seconds while the endpoint is down or does not
  answer 2xx.

The checks SdI makes that this simulator reproduces (codes and texts of SdI's "Elenco controlli"):
00001 file name, 00002 file name already received, 00003 size over 5 MB, 00200 not well-formed or
not valid against FatturaPA_v1.2.2.xsd, 00300/00301/00302/00305/00306 the transmitter's, seller's
and buyer's Italian VAT numbers and tax codes, 00417 a buyer with neither, 00426 PECDestinatario
with a CodiceDestinatario other than 0000000, 00427 CodiceDestinatario length against the format,
00404 an invoice (seller, type, date, number) already taken and not rejected. Not reproduced: the
registries SdI consults (whether a VAT number or a recipient code exists, 00311/00312), the
arithmetic checks (004xx; `renewals/invoice.py` makes them before sending), signed `.p7m` files.

Control API on the same port (JSON), for tests and demos: `POST /control` (`available`,
`answer_delay`, `notify_delay`, `callback_url`, `retry_for`), `POST /control/rules` (the outcome for
a buyer: `{"buyer", "outcome": "RC"|"MC"|"NS", "errors", "times"}`, first match wins),
`DELETE /control/rules`, `GET /control/received` (every RiceviFile call, EI01/EI02 ones with a null
`sdi_id`), `GET /control/notifications` (what went back, with delivery status). Ids, the files
received and the notifications persist in `sdi-state.json` of its directory; the control settings
do not.

Run alone: `python -m stack.sdi --port 7777 --dir var/sdi --callback http://127.0.0.1:8000/sdi/TrasmissioneFatture`.
"""

import argparse
import asyncio
import base64
import binascii
import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx
import uvicorn
import zeep
import zeep.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request, Response
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator
from signxml import methods
from signxml.xades import XAdESSigner
from stdnum.it import codicefiscale, iva
from zeep.proxy import AsyncServiceProxy

from activities.sdi_client import LocalOnlyTransport
from renewals.invoice import SCHEMA_PATH as FATTURA_SCHEMA
from renewals.sdicoop import MESSAGES_NS, TRASMISSIONE_FATTURE_WSDL, TYPES_NS

ROME = ZoneInfo("Europe/Rome")
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
FATTURA_NS = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.2"
TRASMISSIONE_BINDING = "{http://www.fatturapa.gov.it/sdi/ws/trasmissione/v1.0}TrasmissioneFatture_binding"
KEY_FILE = "sdi-signing.key"
CERT_FILE = "sdi-signing.pem"
STATE_FILE = "sdi-state.json"
FILE_LIMIT = 5 * 1024 * 1024  # SdI takes files up to 5 MB (00003 above)
REQUEST_LIMIT = 8 * 1024 * 1024  # 5 MB in base64 and its envelope
# The file name (Specifiche tecniche): country, the transmitter's tax id, "_", a 5-character
# alphanumeric progressive, ".xml" or ".xml.p7m". An Italian id is a partita IVA or a codice fiscale.
FILE_NAME = re.compile(
    r"(?:IT(?:[0-9]{11}|[A-Z0-9]{16})|(?!IT)[A-Z]{2}[A-Za-z0-9]{2,28})_[A-Za-z0-9]{5}\.(?i:xml|xml\.p7m)"
)
# nomeFile_Type of TrasmissioneTypes: what the SOAP request's NomeFile may hold at all.
SOAP_FILE_NAME = re.compile(r"[a-zA-Z0-9_.]{9,50}")
# The texts SdI writes for the checks above.
ERRORS = {
    "00001": "Nome file non valido",
    "00002": "Nome file duplicato",
    "00003": "Le dimensioni del file superano quelle ammesse",
    "00200": "File non conforme al formato",
    "00300": "1.1.1.2 <IdCodice> non valido",
    "00301": "1.2.1.1.2 <IdCodice> non valido",
    "00302": "1.2.1.2 <CodiceFiscale> non valido",
    "00305": "1.4.1.1.2 <IdCodice> non valido",
    "00306": "1.4.1.2 <CodiceFiscale> non valido",
    "00404": "Fattura duplicata",
    "00417": (
        "1.4.1.1 <IdFiscaleIVA> e 1.4.1.2 <CodiceFiscale> non valorizzati (almeno uno dei due deve essere valorizzato)"
    ),
    "00426": (
        "1.1.6 <PECDestinatario> valorizzato a fronte di 1.1.4 <CodiceDestinatario> con valore diverso da 0000000"
    ),
    "00427": (
        "1.1.4 <CodiceDestinatario> di 7 caratteri a fronte di 1.1.3 <FormatoTrasmissione> con valore "
        "FPA12 o 1.1.4 <CodiceDestinatario> di 6 caratteri a fronte di 1.1.3 <FormatoTrasmissione> "
        "con valore FPR12"
    ),
}
NOT_DELIVERED = (
    "La fattura non è stata recapitata al destinatario ed è a sua disposizione nell'area riservata "
    "del sito web dell'Agenzia delle Entrate"
)
OPERATION_OF = {"RC": "RicevutaConsegna", "MC": "NotificaMancataConsegna", "NS": "NotificaScarto"}
Outcome = Literal["RC", "MC", "NS"]


# ---------------------------------------------------------------------- signing


def ensure_certificate(directory: Path) -> tuple[Path, Path]:
    """The simulator's signing key and self-signed certificate in `directory`, made on first use
    and reused after: (key path, certificate path). The transmitter trusts this certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    if key_path.exists() and cert_path.exists():
        return key_path, cert_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Renewals local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Sistema di Interscambio (simulatore locale)"),
        ]
    )
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Written beside and renamed into place: a start cut short never leaves half a key.
    for path, content, mode in (
        (key_path, key_pem, 0o600),
        (cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644),
    ):
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        temporary.rename(path)
    return key_path, cert_path


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


def _safe_parse(data: bytes) -> etree._Element:
    root = etree.fromstring(data, _parser())
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise ValueError("a DOCTYPE is not accepted")
    return root


def sign_notification(xml: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """`xml` with an enveloped XAdES-BES signature appended to its root, as SdI signs its
    notifications: the whole document (less the signature), the SignedProperties and the KeyInfo
    referenced, rsa-sha256, the certificate in KeyInfo. Inclusive C14N 1.0 throughout, so the
    references without transforms digest what XMLDSig says a verifier computes for them."""
    signer = XAdESSigner(
        method=methods.enveloped,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    )
    signed = signer.sign(_safe_parse(xml), key=key_pem, cert=cert_pem.decode())
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


# ---------------------------------------------------------------------- files and checks


@dataclass(frozen=True)
class InvoiceFacts:
    """What the checks read of a FatturaPA file."""

    buyer: str | None
    number: str | None
    recipient_code: str | None
    keys: list[list[str]]  # seller id, document type, date, number: one per body


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _text(parent: etree._Element, path: str) -> str | None:
    found = parent.find(path)
    return None if found is None or found.text is None else found.text.strip()


@dataclass
class Checked:
    errors: list[dict[str, str]]
    invoice: InvoiceFacts | None = None


def _error(code: str, detail: str = "") -> dict[str, str]:
    description = ERRORS[code] + (f" : {detail}" if detail else "")
    return {"code": code, "description": description[:255]}


@cache
def fattura_schema() -> etree.XMLSchema:
    """FatturaPA_v1.2.2.xsd, compiled once from the project's copy."""
    return etree.XMLSchema(etree.parse(str(FATTURA_SCHEMA), _parser()))


def _tax_id_problems(root: etree._Element) -> list[dict[str, str]]:
    """The Italian VAT numbers and tax codes of transmitter, seller and buyer (check digits)."""
    errors = []
    header = root.find("FatturaElettronicaHeader")
    assert header is not None  # the schema requires it
    places = [
        ("DatiTrasmissione/IdTrasmittente", "00300", None),
        ("CedentePrestatore/DatiAnagrafici/IdFiscaleIVA", "00301", "CedentePrestatore/DatiAnagrafici/CodiceFiscale"),
        (
            "CessionarioCommittente/DatiAnagrafici/IdFiscaleIVA",
            "00305",
            "CessionarioCommittente/DatiAnagrafici/CodiceFiscale",
        ),
    ]
    tax_code_error = {"00301": "00302", "00305": "00306"}
    for id_path, code, tax_code_path in places:
        country, number = _text(header, f"{id_path}/IdPaese"), _text(header, f"{id_path}/IdCodice")
        if country == "IT" and number is not None:
            # The transmitter's IdCodice is its codice fiscale (an 11-digit one for a company).
            valid = codicefiscale.is_valid(number) if code == "00300" else iva.is_valid(number)
            if not valid:
                errors.append(_error(code))
        if tax_code_path is not None:
            tax_code = _text(header, tax_code_path)
            if tax_code is not None and not codicefiscale.is_valid(tax_code):
                errors.append(_error(tax_code_error[code]))
    buyer = header.find("CessionarioCommittente/DatiAnagrafici")
    if buyer is not None and buyer.find("IdFiscaleIVA") is None and buyer.find("CodiceFiscale") is None:
        errors.append(_error("00417"))
    return errors


def _recipient_problems(root: etree._Element) -> list[dict[str, str]]:
    transmission = root.find("FatturaElettronicaHeader/DatiTrasmissione")
    assert transmission is not None
    code = _text(transmission, "CodiceDestinatario") or ""
    form = _text(transmission, "FormatoTrasmissione")
    errors = []
    if (form == "FPR12" and len(code) != 7) or (form == "FPA12" and len(code) != 6):
        errors.append(_error("00427"))
    if _text(transmission, "PECDestinatario") is not None and code != "0000000":
        errors.append(_error("00426"))
    return errors


def read_invoice(root: etree._Element) -> InvoiceFacts:
    header = root.find("FatturaElettronicaHeader")
    assert header is not None
    registry = header.find("CessionarioCommittente/DatiAnagrafici/Anagrafica")
    buyer = None
    if registry is not None:
        buyer = _text(registry, "Denominazione") or " ".join(
            part for part in (_text(registry, "Nome"), _text(registry, "Cognome")) if part
        )
    seller = "".join(
        _text(header, f"CedentePrestatore/DatiAnagrafici/IdFiscaleIVA/{tag}") or "" for tag in ("IdPaese", "IdCodice")
    )
    keys = []
    for body in root.iterfind("FatturaElettronicaBody"):
        document = body.find("DatiGenerali/DatiGeneraliDocumento")
        assert document is not None
        keys.append([seller] + [_text(document, tag) or "" for tag in ("TipoDocumento", "Data", "Numero")])
    return InvoiceFacts(
        buyer=buyer or None,
        number=keys[0][3] if keys else None,
        recipient_code=_text(header, "DatiTrasmissione/CodiceDestinatario"),
        keys=keys,
    )


def check_file(file_name: str, file: bytes, names_taken: set[str], invoices_taken: set[tuple[str, ...]]) -> Checked:
    """SdI's checks on a file it took, in SdI's order: the name, the format, then the content."""
    if not FILE_NAME.fullmatch(file_name):
        return Checked([_error("00001")])
    if file_name in names_taken:
        return Checked([_error("00002")])
    if len(file) > FILE_LIMIT:
        return Checked([_error("00003")])
    if file_name.lower().endswith(".p7m"):
        return Checked([_error("00200", "file firmato (.p7m): il simulatore legge solo file .xml")])
    try:
        root = _safe_parse(file)
    except (etree.XMLSyntaxError, ValueError) as error:
        return Checked([_error("00200", str(error))])
    schema = fattura_schema()
    if not schema.validate(root):
        first = schema.error_log[0]  # type: ignore[attr-defined]
        return Checked([_error("00200", f"{first.message} riga: {first.line} - colonna: {first.column}")])
    invoice = read_invoice(root)
    errors = _recipient_problems(root) + _tax_id_problems(root)
    if any(tuple(key) in invoices_taken for key in invoice.keys):
        errors.append(_error("00404"))
    return Checked(errors, invoice)


def notification_name(file_name: str, kind: str, progressive: int) -> str:
    """`IT01234567890_00001_RC_001.xml`: the file's name without extension, the kind, a progressive."""
    stem = re.sub(r"\.xml(\.p7m)?$", "", file_name, flags=re.IGNORECASE)
    suffix = f"_{kind}_{progressive:03d}.xml"
    return stem[: 50 - len(suffix)] + suffix  # NomeFile holds at most 50 characters


def notification_xml(
    kind: Outcome,
    *,
    sdi_id: str,
    file_name: str,
    received_at: str,
    message_id: str,
    delivered_at: str | None = None,
    recipient_code: str | None = None,
    buyer: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> bytes:
    """The unsigned notification (MessaggiTypes v1.1), its elements in the schema's order."""
    root = etree.Element(f"{{{MESSAGES_NS}}}{OPERATION_OF[kind]}", nsmap={"types": MESSAGES_NS}, versione="1.0")
    _sub(root, "IdentificativoSdI", sdi_id)
    _sub(root, "NomeFile", file_name[:50])
    _sub(root, "DataOraRicezione", received_at)
    if kind == "RC":
        _sub(root, "DataOraConsegna", delivered_at or received_at)
        recipient = _sub(root, "Destinatario")
        # MessaggiTypes v1.1 knows only the 6-character codes of public offices; a 7-character
        # recipient code (FPR12) does not fit Destinatario/Codice, so it is named in Descrizione.
        code = recipient_code or ""
        fits = re.fullmatch(r"[A-Z0-9]{6}", code) is not None
        _sub(recipient, "Codice", code if fits else "000000")
        who = buyer or "destinatario"
        _sub(recipient, "Descrizione", who if fits else f"{who} (codice destinatario {code or 'assente'})")
    elif kind == "NS":
        listed = _sub(root, "ListaErrori")
        for error in errors or []:
            entry = _sub(listed, "Errore")
            _sub(entry, "Codice", error["code"])
            _sub(entry, "Descrizione", error["description"][:255])
    else:
        _sub(root, "Descrizione", NOT_DELIVERED)
    _sub(root, "MessageId", message_id)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


# ---------------------------------------------------------------------- SOAP


def _envelope() -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soapenv": SOAP_ENV, "types": TYPES_NS})
    return envelope, _sub(envelope, f"{{{SOAP_ENV}}}Body")


def _soap(envelope: etree._Element, status: int = 200) -> Response:
    content = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return Response(content, status_code=status, media_type="text/xml; charset=utf-8")


def fault(reason: str) -> Response:
    envelope, body = _envelope()
    element = _sub(body, f"{{{SOAP_ENV}}}Fault")
    _sub(element, "faultcode", "soapenv:Client")
    _sub(element, "faultstring", reason)
    return _soap(envelope, 500)


def answer(sdi_id: str, received_at: str, error: str | None = None) -> Response:
    envelope, body = _envelope()
    reply = _sub(body, f"{{{TYPES_NS}}}rispostaSdIRiceviFile")
    _sub(reply, "IdentificativoSdI", sdi_id)
    _sub(reply, "DataOraRicezione", received_at)
    if error is not None:
        _sub(reply, "Errore", error)
    return _soap(envelope)


def read_request(body: bytes) -> tuple[str, bytes]:
    """(NomeFile, File) of a RiceviFile request, or ValueError with the reason."""
    try:
        envelope = _safe_parse(body)
    except etree.XMLSyntaxError as error:
        raise ValueError(f"not XML: {error}") from None
    if envelope.tag != f"{{{SOAP_ENV}}}Envelope":
        raise ValueError(f"{envelope.tag} is not a SOAP 1.1 Envelope")
    request = envelope.find(f"{{{SOAP_ENV}}}Body/{{{TYPES_NS}}}fileSdIAccoglienza")
    if request is None:
        raise ValueError("the SOAP Body holds no types:fileSdIAccoglienza")
    name, content = _text(request, "NomeFile"), request.find("File")
    if name is None or content is None:
        raise ValueError("fileSdIAccoglienza needs NomeFile and File")
    if not SOAP_FILE_NAME.fullmatch(name):
        raise ValueError(f"NomeFile {name[:60]!r} is not 9-50 of [a-zA-Z0-9_.]")
    try:
        file = base64.b64decode(re.sub(r"\s+", "", content.text or ""), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("File is not base64") from None
    return name, file


# ---------------------------------------------------------------------- state and control


class ControlSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available: bool = True
    answer_delay: float = Field(default=0.0, ge=0, le=600)
    notify_delay: float = Field(default=0.0, ge=0, le=86400)
    callback_url: str = ""
    retry_for: float = Field(default=3600.0, ge=0, le=86400)  # how long a notification is retried


class SettingsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available: bool | None = None
    answer_delay: float | None = Field(default=None, ge=0, le=600)
    notify_delay: float | None = Field(default=None, ge=0, le=86400)
    callback_url: str | None = None
    retry_for: float | None = Field(default=None, ge=0, le=86400)


class RuleError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9]{5}$")
    description: str = Field(min_length=1, max_length=255)


class Rule(BaseModel):
    """The outcome of the next `times` files (null: all) whose buyer is `buyer`."""

    model_config = ConfigDict(extra="forbid")

    buyer: str
    outcome: Outcome
    errors: list[RuleError] = []
    times: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ns_has_errors(self) -> "Rule":
        if self.outcome == "NS" and not self.errors:
            raise ValueError("an NS rule needs the errors SdI lists (code and description)")
        return self


CALLBACKS_AT_ONCE = 16


def _now() -> str:
    return datetime.now(ROME).isoformat(timespec="milliseconds")


class Simulator:
    """The simulator's state (thread-safe) and what it does with a file."""

    def __init__(self, directory: Path, callback_url: str) -> None:
        self.directory = directory
        key_path, self.cert_path = ensure_certificate(directory)
        self._key_pem, self._cert_pem = key_path.read_bytes(), self.cert_path.read_bytes()
        self.settings = ControlSettings(callback_url=callback_url)
        self.rules: list[Rule] = []
        self._lock = threading.Lock()
        self._state_path = directory / STATE_FILE
        state = json.loads(self._state_path.read_text()) if self._state_path.exists() else {}
        self._next_id: int = state.get("next_id", 1)
        self._next_message: int = state.get("next_message", 1)
        self.received: list[dict[str, Any]] = state.get("received", [])
        self.notifications: list[dict[str, Any]] = state.get("notifications", [])
        self._invoices: set[tuple[str, ...]] = {tuple(key) for key in state.get("invoices", [])}
        self._tasks: set[asyncio.Task[None]] = set()
        self._services: dict[str, Any] = {}
        # Callbacks in flight at once, as a peer keeps a bounded pool: a burst of files never turns
        # into hundreds of connections that time out waiting for each other.
        self._sending: asyncio.Semaphore | None = None

    def _save(self) -> None:
        state = {
            "next_id": self._next_id,
            "next_message": self._next_message,
            "received": self.received,
            "notifications": self.notifications,
            "invoices": sorted(list(key) for key in self._invoices),
        }
        temporary = self._state_path.with_name(f".{STATE_FILE}.tmp")
        temporary.write_text(json.dumps(state, indent=1))
        temporary.rename(self._state_path)

    def change(self, change: SettingsChange) -> ControlSettings:
        with self._lock:
            self.settings = self.settings.model_copy(update=change.model_dump(exclude_none=True))
            return self.settings

    def answer_delay(self) -> float:
        with self._lock:
            return self.settings.answer_delay

    def add_rule(self, rule: Rule) -> list[Rule]:
        with self._lock:
            self.rules.append(rule)
            return list(self.rules)

    def clear_rules(self) -> None:
        with self._lock:
            self.rules.clear()

    def listing(self, what: Literal["received", "notifications"]) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in (self.received if what == "received" else self.notifications)]

    def _outcome(self, buyer: str | None) -> tuple[Outcome, list[dict[str, str]]]:
        for rule in self.rules:
            if rule.buyer == buyer and (rule.times is None or rule.times > 0):
                if rule.times is not None:
                    rule.times -= 1
                return rule.outcome, [error.model_dump() for error in rule.errors]
        return "RC", []

    def take(self, file_name: str, file: bytes) -> tuple[str, str, str | None]:
        """RiceviFile: (IdentificativoSdI, DataOraRicezione, Errore); a file taken is checked and
        its notification scheduled before this returns."""
        received_at = _now()
        with self._lock:
            error = "EI02" if not self.settings.available else "EI01" if not file else None
            if error is not None:
                self.received.append(
                    {"file_name": file_name, "sdi_id": None, "received_at": received_at, "outcome": error}
                    | {"buyer": None, "invoice_number": None}
                )
                self._save()
                return "0", received_at, error
            sdi_id = str(self._next_id)
            self._next_id += 1
            names = {entry["file_name"] for entry in self.received if entry["sdi_id"] is not None}
            checked = check_file(file_name, file, names, self._invoices)
            invoice = checked.invoice
            buyer = invoice.buyer if invoice else None
            outcome: Outcome = "NS"
            errors = checked.errors
            if not errors:
                outcome, errors = self._outcome(buyer)
            if outcome != "NS" and invoice is not None:
                self._invoices.update(tuple(key) for key in invoice.keys)
            self.received.append(
                {
                    "file_name": file_name,
                    "sdi_id": sdi_id,
                    "received_at": received_at,
                    "outcome": outcome,
                    "buyer": buyer,
                    "invoice_number": invoice.number if invoice else None,
                    "errors": errors,
                }
            )
            progressive = 1 + sum(1 for sent in self.notifications if sent["file_name"] == file_name)
            message_id = str(self._next_message)
            self._next_message += 1
            record = {
                "name": notification_name(file_name, outcome, progressive),
                "kind": outcome,
                "operation": OPERATION_OF[outcome],
                "file_name": file_name,
                "sdi_id": sdi_id,
                "message_id": message_id,
                "status": "pending",
                "attempts": 0,
                "last_error": None,
                "delivered_at": None,
            }
            self.notifications.append(record)
            self._save()
            details = {
                "received_at": received_at,
                "errors": errors,
                "recipient_code": invoice.recipient_code if invoice else None,
                "buyer": buyer,
            }
        task = asyncio.get_running_loop().create_task(self._notify(record, details))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return sdi_id, received_at, None

    def _service(self, url: str) -> Any:
        if url not in self._services:
            transport = LocalOnlyTransport(client=httpx.AsyncClient(timeout=10.0))
            transport.wsdl_client.close()
            # The raw answer: any 2xx is a delivery, whatever the body (SdI reads the status).
            settings = zeep.Settings(strict=True, raw_response=True, forbid_dtd=True)
            client = zeep.AsyncClient(str(TRASMISSIONE_FATTURE_WSDL), transport=transport, settings=settings)
            # AsyncClient.create_service hands back a synchronous proxy (zeep 4.3): build the async one.
            self._services[url] = AsyncServiceProxy(client, client.wsdl.bindings[TRASMISSIONE_BINDING], address=url)
        return self._services[url]

    async def _notify(self, record: dict[str, Any], details: dict[str, Any]) -> None:
        with self._lock:
            delay, url, retry_for = self.settings.notify_delay, self.settings.callback_url, self.settings.retry_for
        await asyncio.sleep(delay)
        try:
            # Signing is CPU work: in a thread, so this loop keeps answering and delivering.
            file = await asyncio.to_thread(self._notification, record, details)
        except Exception as error:  # a bug of ours: shown in /control/notifications, not lost in a task
            with self._lock:
                record["status"], record["last_error"] = "failed", f"not built: {type(error).__name__}: {error}"
                self._save()
            return
        with self._lock:
            record["file"] = base64.b64encode(file).decode()
            record["callback_url"] = url
            self._save()
        deadline = time.monotonic() + retry_for
        pause = 0.2
        if self._sending is None:
            self._sending = asyncio.Semaphore(CALLBACKS_AT_ONCE)
        while True:
            async with self._sending:
                problem = await self._deliver(url, record, file)
            with self._lock:
                record["attempts"] += 1
                record["last_error"] = problem
                if problem is None:
                    record["status"], record["delivered_at"] = "delivered", _now()
                elif time.monotonic() + pause > deadline:
                    record["status"] = "failed"
                self._save()
                if record["status"] != "pending":
                    return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)

    def _notification(self, record: dict[str, Any], details: dict[str, Any]) -> bytes:
        xml = notification_xml(
            record["kind"],
            sdi_id=record["sdi_id"],
            file_name=record["file_name"],
            received_at=details["received_at"],
            message_id=record["message_id"],
            delivered_at=_now(),
            recipient_code=details["recipient_code"],
            buyer=details["buyer"],
            errors=details["errors"],
        )
        return sign_notification(xml, self._key_pem, self._cert_pem)

    async def _deliver(self, url: str, record: dict[str, Any], file: bytes) -> str | None:
        """One attempt; None when the transmitter took it (HTTP 2xx without a SOAP Fault)."""
        if not url:
            return "no callback_url configured"
        try:
            operation = getattr(self._service(url), record["operation"])
            response = await operation(IdentificativoSdI=int(record["sdi_id"]), NomeFile=record["name"], File=file)
        except (httpx.HTTPError, zeep.exceptions.Error, OSError) as error:
            return f"{type(error).__name__}: {error}"
        if not 200 <= response.status_code < 300:
            return f"HTTP {response.status_code}"
        if b"Fault>" in response.content:
            return "SOAP Fault"
        return None


async def _body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ValueError(f"request over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(simulator: Simulator) -> FastAPI:
    app = FastAPI(title="SdI simulator", openapi_url=None, docs_url=None, redoc_url=None)

    async def ricevi_file(request: Request) -> Response:
        try:
            file_name, file = read_request(await _body(request, REQUEST_LIMIT))
        except ValueError as problem:
            return fault(str(problem))
        sdi_id, received_at, error = simulator.take(file_name, file)
        delay = simulator.answer_delay() if error is None else 0.0
        # The file is taken and its notification scheduled already: a sender that stops waiting
        # here has still handed the file to SdI (the in-doubt case).
        await asyncio.sleep(delay)
        return answer(sdi_id, received_at, error)

    app.add_api_route("/SdIRiceviFile", ricevi_file, methods=["POST"])
    app.add_api_route("/ricevi_file", ricevi_file, methods=["POST"])

    @app.post("/control")
    def control(change: SettingsChange) -> ControlSettings:
        return simulator.change(change)

    @app.post("/control/rules")
    def add_rule(rule: Rule) -> list[Rule]:
        return simulator.add_rule(rule)

    @app.delete("/control/rules")
    def clear_rules() -> list[Rule]:
        simulator.clear_rules()
        return []

    @app.get("/control/received")
    def received() -> list[dict[str, Any]]:
        return simulator.listing("received")

    @app.get("/control/notifications")
    def notifications() -> list[dict[str, Any]]:
        return simulator.listing("notifications")

    return app


# ---------------------------------------------------------------------- running it


class SdiSimulator:
    """A simulator running in a background thread (its own event loop); `stop()` ends it."""

    def __init__(self, simulator: Simulator, server: uvicorn.Server, thread: threading.Thread, base: str) -> None:
        self.simulator = simulator
        self._server = server
        self._thread = thread
        self.url = f"{base}/SdIRiceviFile"
        self.control_url = f"{base}/control"
        self.cert_path = simulator.cert_path

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)


def start_sdi(directory: Path, host: str, port: int, callback_url: str) -> SdiSimulator:
    """Start the simulator on host:port; returns once it accepts connections."""
    simulator = Simulator(directory, callback_url)
    config = uvicorn.Config(
        create_app(simulator),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # stop() must not wait on a request held by answer_delay.
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"sdi-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the SdI simulator did not start on {host}:{port} (port taken?)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the SdI simulator did not start on {host}:{port} within 15 s")
        time.sleep(0.02)
    shown = f"[{host}]" if ":" in host else host
    return SdiSimulator(simulator, server, thread, f"http://{shown}:{port}")


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description="A local SdI: RiceviFile, checks, signed notifications.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7777)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--callback", required=True, help="the transmitter's TrasmissioneFatture endpoint")
    parser.add_argument("--allow-non-loopback", action="store_true", help="listen on a host other than loopback")
    args = parser.parse_args()
    if not _is_loopback(args.host) and not args.allow_non_loopback:
        parser.error(f"--host {args.host} is not loopback: the simulator listens on loopback only")
    running = start_sdi(args.dir, args.host, args.port, args.callback)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"SdI simulator on {running.url}, notifications to {args.callback}, signed with {running.cert_path}",
        flush=True,
    )
    stop.wait()
    running.stop()


if __name__ == "__main__":
    main()
