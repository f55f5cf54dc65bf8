"""SDICoop, the web-service channel between a transmitter and SdI (P18), as pure protocol code.

Owns what a transmitter must read and write on that channel, from the published specifications
(our copies in `renewals/fatturapa/`, offline):
- `read_notification`: a notification file SdI sends back (RicevutaConsegna, NotificaScarto, ...,
  schema `MessaggiTypes_v1.1.xsd`), parsed safely, validated, and accepted only if its enveloped
  XML signature verifies against the one certificate we are configured to trust;
- `read_callback`: SdI's SOAP 1.1 request to our `TrasmissioneFatture` endpoint (one-way
  operations, document/literal, `File` inline in base64 or as an MTOM/XOP attachment), and the
  answers to it (`callback_answer`, `soap_fault`);
- `Acceptance`: what SdI's `RiceviFile` answered when we sent a file (the SOAP client that asks is
  `activities/sdi_client.py`'s: no network here).

Nothing here does I/O beyond reading the schema copies once, or reads a clock.
"""

import base64
import binascii
import re
from datetime import datetime
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import HTTP
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from cryptography import x509
from lxml import etree
from pydantic import BaseModel, ConfigDict
from signxml import SignatureConfiguration, XMLVerifier
from signxml.algorithms import CanonicalizationMethod, SignatureConstructionMethod
from signxml.exceptions import SignXMLException
from signxml.util import _remove_sig

from renewals.dates import ROME
from renewals.safe_xml import safe_parser

FATTURAPA_DIR = Path(__file__).resolve().parent / "fatturapa"
MESSAGES_SCHEMA = FATTURAPA_DIR / "MessaggiTypes_v1.1.xsd"
RICEVI_FILE_WSDL = FATTURAPA_DIR / "sdicoop" / "SdIRiceviFile_v1.0.wsdl"
TRASMISSIONE_FATTURE_WSDL = FATTURAPA_DIR / "sdicoop" / "TrasmissioneFatture_v1.1.wsdl"

# The SOAP bodies' namespace (TrasmissioneTypes_v1.x.xsd) and the notification files' namespace
# (the targetNamespace of MessaggiTypes_v1.1.xsd, which keeps "v1.0" in its name).
TYPES_NS = "http://www.fatturapa.gov.it/sdi/ws/trasmissione/v1.0/types"
MESSAGES_NS = "http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV_NS = "http://www.w3.org/2003/05/soap-envelope"
XOP_NS = "http://www.w3.org/2004/08/xop/include"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"

NOTIFICATION_LIMIT = 1_000_000  # a notification is a few kB; SdI's largest (NS with 200 errors) is far below
CALLBACK_LIMIT = 5_000_000  # the SOAP request around one notification, base64 or MTOM

Kind = Literal["RC", "MC", "NS", "DT", "NE", "AT"]
# The TrasmissioneFatture operations SdI calls on a transmitter, and the notification each carries.
OPERATIONS: dict[str, Kind] = {
    "RicevutaConsegna": "RC",
    "NotificaMancataConsegna": "MC",
    "NotificaScarto": "NS",
    "NotificaDecorrenzaTermini": "DT",
    "NotificaEsito": "NE",
    "AttestazioneTrasmissioneFattura": "AT",
}
# Each operation's SOAP body element (document/literal: the element names the operation).
BODY_ELEMENTS: dict[str, str] = {operation[0].lower() + operation[1:]: operation for operation in OPERATIONS}
# The root element of each notification file (MessaggiTypes v1.1) is named as the operation
# that carries it.
NOTIFICATION_ROOTS: dict[str, Kind] = dict(OPERATIONS)
SDI_ID = re.compile(r"[0-9]{1,12}")
# nomeFile_Type of TrasmissioneTypes_v1.1.xsd.
NOTIFICATION_NAME = re.compile(r"[a-zA-Z0-9_.]{9,50}")


class NotificationError(BaseModel):
    """One entry of a NotificaScarto's ListaErrori: SdI's error code (`00404`) and its text."""

    model_config = ConfigDict(frozen=True)

    code: str
    description: str


class Notification(BaseModel):
    """A verified notification: what SdI said about one of our files."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    sdi_id: str  # IdentificativoSdI of the file it is about
    file_name: str  # NomeFile of that file
    message_id: str
    received_at: datetime | None = None  # DataOraRicezione: when SdI took the file
    delivered_at: datetime | None = None  # DataOraConsegna of an RC
    errors: list[NotificationError] = []  # ListaErrori of an NS
    description: str | None = None  # Descrizione (MC, DT; NE: the outcome code first) or else Note


class NotificationRefused(ValueError):
    """A notification file we do not take: unreadable, not SdI's format, or not signed by SdI."""


class Callback(BaseModel):
    """SdI's request to our TrasmissioneFatture endpoint, read but not yet verified: `file` is the
    notification file, for `read_notification`."""

    model_config = ConfigDict(frozen=True)

    operation: str
    kind: Kind
    sdi_id: str
    notification_name: str  # NomeFile of the SOAP body: the notification file's own name
    file: bytes


class CallbackRefused(ValueError):
    """A request to our TrasmissioneFatture endpoint that is not one of SdI's callbacks."""


class Acceptance(BaseModel):
    """SdI's answer to RiceviFile: the file taken (its IdentificativoSdI and DataOraRicezione), or
    refused at the door with `error` EI01 (empty file), EI02 (service unavailable: send again later)
    or EI03 (transmitter not enabled). A file refused at the door has no IdentificativoSdI."""

    model_config = ConfigDict(frozen=True)

    sdi_id: str | None
    received_at: datetime | None
    error: Literal["EI01", "EI02", "EI03"] | None = None


# ---------------------------------------------------------------------- safe XML


def _parse_xml(data: bytes, what: str, refused: type[ValueError]) -> etree._Element:
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as error:
        raise refused(f"{what} is not well-formed XML: {error}") from None
    if root is None:
        raise refused(f"{what} is empty")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise refused(f"{what} carries a DOCTYPE: DTDs and entities are refused")
    return root


def _text(parent: etree._Element, path: str) -> str | None:
    element = parent.find(path)
    return None if element is None or element.text is None else element.text.strip()


# ---------------------------------------------------------------------- notifications


@cache
def messages_schema() -> etree.XMLSchema:
    """MessaggiTypes_v1.1.xsd compiled once from our copy (it imports xmldsig-core-schema.xsd beside it)."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(MESSAGES_SCHEMA), parser))


class _Verifier(XMLVerifier):
    """signxml's verifier, knowing the reference SdI puts on the document.

    SdI signs its notifications XAdES-BES: besides the SignedProperties and KeyInfo references, the
    document reference is `URI=""` with an XPath Filter 2.0 transform that subtracts
    `/descendant::ds:Signature`. signxml does not implement XPath Filter 2.0 and would skip it,
    digesting the document with its signature; with exactly one ds:Signature in the document (we
    check) that filter removes the same nodes as the enveloped-signature transform, so it is applied
    as such. Any other transform than those and canonicalization is refused rather than skipped.
    """

    _c14n_methods = frozenset(method.value for method in CanonicalizationMethod)

    def _apply_transforms(self, payload: Any, *, transforms_node: Any, signature: Any) -> Any:
        if transforms_node is not None:
            for transform in self._findall(transforms_node, "Transform"):
                algorithm = transform.get("Algorithm")
                if algorithm == FILTER2:
                    _check_signature_filter(transform)
                    _remove_sig(signature, idempotent=True)
                elif algorithm != SignatureConstructionMethod.enveloped.value and algorithm not in self._c14n_methods:
                    raise NotificationRefused(f"notification signature uses the transform {algorithm}, not accepted")
        return super()._apply_transforms(payload, transforms_node=transforms_node, signature=signature)


def _check_signature_filter(transform: etree._Element) -> None:
    paths = [child for child in transform if isinstance(child.tag, str)]
    if len(paths) != 1 or paths[0].tag != f"{{{FILTER2}}}XPath":
        raise NotificationRefused("notification signature has an XPath Filter 2.0 transform without one XPath")
    path = paths[0]
    prefix, _, _ = (path.text or "").strip().removeprefix("/descendant::").partition(":")
    if (
        path.get("Filter") != "subtract"
        or (path.text or "").strip() != f"/descendant::{prefix}:Signature"
        or path.nsmap.get(prefix) != DS_NS
    ):
        raise NotificationRefused(
            "notification signature filters the document otherwise than by subtracting its ds:Signature"
        )


def _verified_document(root: etree._Element, certificate: x509.Certificate) -> etree._Element:
    """The document as signed (without its signature), or NotificationRefused."""
    signatures = sum(1 for _ in root.iter(f"{{{DS_NS}}}Signature"))
    if signatures != 1:
        raise NotificationRefused(f"notification carries {signatures} ds:Signature elements, SdI signs once")
    config = SignatureConfiguration(
        location="./",  # MessaggiTypes puts ds:Signature last under the root, nowhere else
        expect_references=True,  # the document, and XAdES's SignedProperties and KeyInfo
        # XMLDSig's rule for a reference without canonicalization transform (SdI's three).
        default_reference_c14n_method=CanonicalizationMethod.CANONICAL_XML_1_0,
        # We trust exactly this certificate's key, pinned by configuration: its validity period
        # says nothing more (and reading it against a clock is not the domain's business).
        verification_time=certificate.not_valid_before_utc,
    )
    try:
        results = _Verifier().verify(root, x509_cert=certificate, parser=safe_parser(), expect_config=config)
    except NotificationRefused:
        raise
    except (SignXMLException, etree.DocumentInvalid, ValueError, KeyError, TypeError) as error:
        raise NotificationRefused(
            f"notification signature does not verify against the configured SdI certificate: {error}"
        ) from None
    results = results if isinstance(results, list) else [results]
    signed_info = results[0].signature_xml.find(f"{{{DS_NS}}}SignedInfo")
    uris = [reference.get("URI") for reference in signed_info.findall(f"{{{DS_NS}}}Reference")]
    # Only what the signature covers is read: the reference to the whole document.
    documents = [result for uri, result in zip(uris, results, strict=True) if uri == ""]
    if len(documents) != 1 or documents[0].signed_xml is None or documents[0].signed_xml.tag != root.tag:
        raise NotificationRefused('notification signature does not cover the whole document (no Reference URI="")')
    signed: etree._Element = documents[0].signed_xml
    return signed


def _instant(document: etree._Element, tag: str) -> datetime | None:
    text = _text(document, tag)
    if text is None:
        return None
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise NotificationRefused(f"notification {tag} {text!r} is not a date-time") from None
    # SdI writes Italian time; a time without offset is read as such.
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=ROME)


def read_notification(file: bytes, signing_cert_pem: bytes) -> Notification:
    """The notification in `file`, if it is a MessaggiTypes v1.1 notification to a transmitter,
    valid against the schema and signed with the key of `signing_cert_pem` (SdI's certificate, as
    configured); NotificationRefused naming what is wrong otherwise. A `signing_cert_pem` that is
    not a PEM certificate is a configuration error: ValueError."""
    certificate = x509.load_pem_x509_certificate(signing_cert_pem)  # ValueError: bad configuration
    if len(file) > NOTIFICATION_LIMIT:
        raise NotificationRefused(f"notification of {len(file)} bytes is over the {NOTIFICATION_LIMIT}-byte limit")
    root = _parse_xml(file, "notification", NotificationRefused)
    name = etree.QName(root)
    if name.namespace != MESSAGES_NS or name.localname not in NOTIFICATION_ROOTS:
        raise NotificationRefused(
            f"notification root {root.tag} is not one of SdI's notifications to a transmitter "
            f"({', '.join(NOTIFICATION_ROOTS)} in {MESSAGES_NS})"
        )
    if root.find(f"{{{DS_NS}}}Signature") is None:
        raise NotificationRefused("notification is not signed (no ds:Signature)")
    schema = messages_schema()
    if not schema.validate(root):
        error = schema.error_log[0]  # type: ignore[attr-defined]
        raise NotificationRefused(
            f"notification is not valid against {MESSAGES_SCHEMA.name}: line {error.line}: {error.message}"
        )
    document = _verified_document(root, certificate)
    kind = NOTIFICATION_ROOTS[name.localname]
    description = _text(document, "Descrizione")
    if kind == "NE":
        outcome = _text(document, "EsitoCommittente/Esito")
        said = _text(document, "EsitoCommittente/Descrizione")
        description = f"{outcome}: {said}" if said else outcome
    return Notification(
        kind=kind,
        sdi_id=_text(document, "IdentificativoSdI") or "",
        file_name=_text(document, "NomeFile") or "",
        message_id=_text(document, "MessageId") or "",
        received_at=_instant(document, "DataOraRicezione"),
        delivered_at=_instant(document, "DataOraConsegna"),
        errors=[
            NotificationError(code=_text(error, "Codice") or "", description=_text(error, "Descrizione") or "")
            for error in document.iterfind("ListaErrori/Errore")
        ],
        description=description or _text(document, "Note"),
    )


# ---------------------------------------------------------------------- callbacks (SOAP)


def _media_type(content_type: str) -> Message:
    header = EmailMessage()
    header["Content-Type"] = content_type
    return header


def _mtom_parts(body: bytes, header: Message) -> tuple[bytes, dict[str, bytes]]:
    """The root part (the SOAP envelope) and the attachments by Content-ID of a multipart/related body."""
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise CallbackRefused("multipart/related request without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise CallbackRefused("multipart/related request is not closed by its boundary")
    parts: list[tuple[Message, bytes]] = []
    for chunk in chunks[1:-1]:
        # Each part runs from the CRLF after a delimiter to the CRLF before the next one.
        chunk = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, separator, content = chunk.partition(b"\r\n\r\n")
        if not separator:
            raise CallbackRefused("multipart/related part without headers")
        part = BytesHeaderParser(policy=HTTP).parsebytes(head + b"\r\n\r\n")
        encoding = str(part.get("Content-Transfer-Encoding", "binary")).strip().lower()
        if encoding == "base64":
            content = _base64(content, "attachment")
        elif encoding not in ("binary", "8bit", "7bit"):
            raise CallbackRefused(f"multipart/related part with Content-Transfer-Encoding {encoding}, not accepted")
        parts.append((part, content))
    start = header.get_param("start")
    root = parts[0]
    if isinstance(start, str) and start:
        matching = [part for part in parts if str(part[0].get("Content-ID", "")).strip() == start.strip()]
        if not matching:
            raise CallbackRefused(f"multipart/related start {start} names no part")
        root = matching[0]
    attachments = {
        str(part[0].get("Content-ID", "")).strip().removeprefix("<").removesuffix(">"): part[1]
        for part in parts
        if part is not root
    }
    return root[1], attachments


def _base64(text: str | bytes, what: str) -> bytes:
    compact = re.sub(rb"\s+", b"", text.encode("ascii", "replace") if isinstance(text, str) else text)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackRefused(f"{what} is not base64") from None


def read_callback(body: bytes, content_type: str) -> Callback:
    """SdI's SOAP 1.1 request to our TrasmissioneFatture endpoint, as plain XML or MTOM/XOP;
    CallbackRefused with the reason for anything else."""
    if len(body) > CALLBACK_LIMIT:
        raise CallbackRefused(f"request of {len(body)} bytes is over the {CALLBACK_LIMIT}-byte limit")
    header = _media_type(content_type or "")
    media = header.get_content_type()
    attachments: dict[str, bytes] = {}
    if media == "multipart/related":
        envelope_bytes, attachments = _mtom_parts(body, header)
    elif media in ("text/xml", "application/xml"):
        envelope_bytes = body
    elif media == "application/soap+xml":
        raise CallbackRefused("SOAP 1.2 request: TrasmissioneFatture is a SOAP 1.1 service (text/xml)")
    else:
        raise CallbackRefused(f"content type {media!r} is not SOAP 1.1 (text/xml) or MTOM (multipart/related)")

    envelope = _parse_xml(envelope_bytes, "request", CallbackRefused)
    if envelope.tag == f"{{{SOAP12_ENV_NS}}}Envelope":
        raise CallbackRefused("SOAP 1.2 envelope: TrasmissioneFatture is a SOAP 1.1 service")
    if envelope.tag != f"{{{SOAP_ENV_NS}}}Envelope":
        raise CallbackRefused(f"request root {envelope.tag} is not a SOAP 1.1 Envelope")
    # SDICoop defines no SOAP headers (the peer is authenticated by TLS): any Header is not read.
    soap_body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
    if soap_body is None:
        raise CallbackRefused("SOAP envelope without a Body")
    elements = [child for child in soap_body if isinstance(child.tag, str)]
    if len(elements) != 1:
        raise CallbackRefused(f"SOAP Body holds {len(elements)} elements, a callback holds one")
    request = elements[0]
    name = etree.QName(request)
    if name.namespace != TYPES_NS or name.localname not in BODY_ELEMENTS:
        raise CallbackRefused(f"SOAP Body element {request.tag} is not a TrasmissioneFatture operation")
    operation = BODY_ELEMENTS[name.localname]

    fields = {child.tag: child for child in request if isinstance(child.tag, str)}
    unexpected = sorted(set(fields) - {"IdentificativoSdI", "NomeFile", "File"})
    if unexpected:
        raise CallbackRefused(f"{operation}: unexpected element {unexpected[0]} (children are unqualified)")
    sdi_id = _text(request, "IdentificativoSdI")
    if sdi_id is None:
        raise CallbackRefused(f"{operation}: IdentificativoSdI missing")
    if not SDI_ID.fullmatch(sdi_id):
        raise CallbackRefused(f"{operation}: IdentificativoSdI {sdi_id[:20]!r} is not 1 to 12 digits")
    notification_name = _text(request, "NomeFile")
    if notification_name is None:
        raise CallbackRefused(f"{operation}: NomeFile missing")
    if not NOTIFICATION_NAME.fullmatch(notification_name):
        raise CallbackRefused(f"{operation}: NomeFile {notification_name[:60]!r} is not 9-50 of [a-zA-Z0-9_.]")
    file_element = fields.get("File")
    if file_element is None:
        raise CallbackRefused(f"{operation}: File missing")
    include = file_element.find(f"{{{XOP_NS}}}Include")
    if include is not None:
        href = include.get("href", "")
        if not href.startswith("cid:"):
            raise CallbackRefused(f"{operation}: File's xop:Include href {href[:60]!r} is not a cid: reference")
        content_id = unquote(href.removeprefix("cid:"))
        if content_id not in attachments:
            raise CallbackRefused(f"{operation}: File's xop:Include names no attachment ({href[:60]})")
        file = attachments[content_id]
    else:
        file = _base64(file_element.text or "", f"{operation}: File")
    if not file:
        raise CallbackRefused(f"{operation}: File is empty")
    return Callback(
        operation=operation,
        kind=OPERATIONS[operation],
        sdi_id=sdi_id,
        notification_name=notification_name,
        file=file,
    )


def _envelope() -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"soapenv": SOAP_ENV_NS})
    return envelope, etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body")


def callback_answer() -> bytes:
    """The answer to a one-way TrasmissioneFatture operation: a SOAP 1.1 envelope with an empty Body."""
    envelope, _ = _envelope()
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def soap_fault(reason: str, *, server: bool = False) -> bytes:
    """A SOAP 1.1 Fault: `soapenv:Client` (the request is wrong: do not send it again as is) or
    `soapenv:Server` (we could not take it now: SdI sends it again)."""
    envelope, body = _envelope()
    fault = etree.SubElement(body, f"{{{SOAP_ENV_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = "soapenv:Server" if server else "soapenv:Client"
    etree.SubElement(fault, "faultstring").text = reason
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))
