"""SDICoop protocol code (P18), pure: SdI's notifications are taken only when valid against
MessaggiTypes v1.1 and signed with the configured certificate (plain XMLDSig, signxml's XAdES, and
the XAdES-BES shape SdI itself produces, with its XPath Filter 2.0 reference), hostile XML is
refused before anything reads it, and SdI's SOAP callbacks are read as plain XML or MTOM/XOP."""

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import zeep
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner, methods

from activities.sdi_client import LocalOnlyTransport
from renewals.sdicoop import (
    BODY_ELEMENTS,
    DS_NS,
    FILTER2,
    MESSAGES_NS,
    MESSAGES_SCHEMA,
    NOTIFICATION_LIMIT,
    OPERATIONS,
    RICEVI_FILE_WSDL,
    SOAP_ENV_NS,
    TRASMISSIONE_FATTURE_WSDL,
    TYPES_NS,
    CallbackRefused,
    NotificationRefused,
    callback_answer,
    read_callback,
    read_notification,
    soap_fault,
)
from stack.sdi import sign_notification


def make_pair(name: str) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


SDI_KEY, SDI_CERT = make_pair("Sistema di Interscambio")
OTHER_KEY, OTHER_CERT = make_pair("Someone else")

COMMON = "<IdentificativoSdI>4321</IdentificativoSdI><NomeFile>IT12345670017_0000A.xml</NomeFile>"
RECEIVED = "<DataOraRicezione>2026-12-01T10:15:30.000+01:00</DataOraRicezione>"
BODIES = {
    "RicevutaConsegna": COMMON
    + RECEIVED
    + "<DataOraConsegna>2026-12-01T10:16:00.000+01:00</DataOraConsegna>"
    + "<Destinatario><Codice>UFABCD</Codice><Descrizione>Rossi Servizi S.r.l.</Descrizione></Destinatario>"
    + "<MessageId>77</MessageId><Note>consegnata</Note>",
    "NotificaMancataConsegna": COMMON
    + RECEIVED
    + "<Descrizione>In area riservata</Descrizione><MessageId>78</MessageId>",
    "NotificaScarto": COMMON
    + RECEIVED
    + "<ListaErrori><Errore><Codice>00404</Codice><Descrizione>Fattura duplicata</Descrizione></Errore>"
    + "<Errore><Codice>00305</Codice><Descrizione>1.4.1.1.2 &lt;IdCodice&gt; non valido</Descrizione></Errore>"
    + "</ListaErrori><MessageId>79</MessageId>",
    "NotificaDecorrenzaTermini": COMMON + "<Descrizione>Decorsi i termini</Descrizione><MessageId>80</MessageId>",
    "NotificaEsito": COMMON
    + '<EsitoCommittente versione="1.0"><IdentificativoSdI>4321</IdentificativoSdI><Esito>EC02</Esito>'
    + "<Descrizione>Importo errato</Descrizione></EsitoCommittente><MessageId>81</MessageId>",
    "AttestazioneTrasmissioneFattura": COMMON
    + RECEIVED
    + "<Destinatario><Codice>UFABCD</Codice><Descrizione>Ufficio</Descrizione></Destinatario>"
    + "<MessageId>82</MessageId><HashFileOriginale>ab12</HashFileOriginale>",
}


def unsigned(root: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<types:{root} xmlns:types="{MESSAGES_NS}" versione="1.0">'
        f"{BODIES[root]}</types:{root}>"
    ).encode()


def plain_signed(xml: bytes, key: bytes = SDI_KEY, cert: bytes = SDI_CERT) -> bytes:
    signer = XMLSigner(method=methods.enveloped, signature_algorithm="rsa-sha256", digest_algorithm="sha256")
    return bytes(etree.tostring(signer.sign(etree.fromstring(xml), key=key, cert=cert.decode())))


def sdi_signed(
    xml: bytes,
    key_pem: bytes = SDI_KEY,
    cert_pem: bytes = SDI_CERT,
    *,
    cover_document: bool = True,
    transform: str = FILTER2,
    filter_kind: str = "subtract",
) -> bytes:
    """Signed as SdI signs (its published notifications): XAdES-BES, exclusive C14N of SignedInfo,
    the document referenced with URI="" and an XPath Filter 2.0 subtracting /descendant::ds:Signature,
    then SignedProperties and KeyInfo referenced by Id. Built by hand: signxml cannot make it."""
    ds = f"{{{DS_NS}}}"
    xades = "http://uri.etsi.org/01903/v1.3.2#"
    root = etree.fromstring(xml)
    digest_of = lambda data: base64.b64encode(hashlib.sha256(data).digest()).decode()  # noqa: E731
    document_digest = digest_of(etree.tostring(root, method="c14n"))  # the document without its signature
    signature = etree.SubElement(root, ds + "Signature", Id="Signature1", nsmap={"ds": DS_NS})
    signed_info = etree.SubElement(signature, ds + "SignedInfo")
    etree.SubElement(signed_info, ds + "CanonicalizationMethod", Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    etree.SubElement(signed_info, ds + "SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    references = []
    for attributes in (
        *([{"Id": "reference-document", "URI": ""}] if cover_document else []),
        {"Id": "reference-signedpropeties", "Type": "http://uri.etsi.org/01903#SignedProperties", "URI": "#SP_1"},
        {"Id": "reference-keyinfo", "URI": "#KeyInfoId"},
    ):
        reference = etree.SubElement(signed_info, ds + "Reference", attributes)
        if attributes["URI"] == "":
            element = etree.SubElement(etree.SubElement(reference, ds + "Transforms"), ds + "Transform")
            element.set("Algorithm", transform)
            path = etree.SubElement(element, f"{{{FILTER2}}}XPath", Filter=filter_kind, nsmap={None: FILTER2})
            path.text = "/descendant::ds:Signature"
        etree.SubElement(reference, ds + "DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
        references.append(etree.SubElement(reference, ds + "DigestValue"))
    if cover_document:
        references.pop(0).text = document_digest
    value = etree.SubElement(signature, ds + "SignatureValue", Id="SignatureValue1")
    key_info = etree.SubElement(signature, ds + "KeyInfo", Id="KeyInfoId")
    cert = x509.load_pem_x509_certificate(cert_pem)
    certificate = etree.SubElement(etree.SubElement(key_info, ds + "X509Data"), ds + "X509Certificate")
    certificate.text = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    qualifying = etree.SubElement(
        etree.SubElement(signature, ds + "Object"),
        f"{{{xades}}}QualifyingProperties",
        Target="#Signature1",
        nsmap={"xades": xades},
    )
    properties = etree.SubElement(qualifying, f"{{{xades}}}SignedProperties", Id="SP_1")
    etree.SubElement(
        etree.SubElement(properties, f"{{{xades}}}SignedSignatureProperties"), f"{{{xades}}}SigningTime"
    ).text = "2026-12-01T10:16:01+01:00"
    # References without transforms digest the element's inclusive C14N (XMLDSig's default).
    references[0].text = digest_of(etree.tostring(properties, method="c14n"))
    references[1].text = digest_of(etree.tostring(key_info, method="c14n"))
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signed = key.sign(etree.tostring(signed_info, method="c14n", exclusive=True), padding.PKCS1v15(), hashes.SHA256())
    value.text = base64.b64encode(signed).decode()
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def refused(file: bytes, cert: bytes = SDI_CERT) -> str:
    with pytest.raises(NotificationRefused) as caught:
        read_notification(file, cert)
    return str(caught.value)


# ---------------------------------------------------------------------- the definitions


def test_p18_messages_ns_is_the_schemas_target_namespace() -> None:
    assert etree.parse(str(MESSAGES_SCHEMA)).getroot().get("targetNamespace") == MESSAGES_NS
    for version in ("v1.0", "v1.1"):
        types = RICEVI_FILE_WSDL.parent / f"TrasmissioneTypes_{version}.xsd"
        assert etree.parse(str(types)).getroot().get("targetNamespace") == TYPES_NS


@pytest.mark.parametrize("wsdl", [RICEVI_FILE_WSDL, TRASMISSIONE_FATTURE_WSDL], ids=lambda path: path.name)
def test_p18_wsdls_load_offline_from_the_project_copies(wsdl) -> None:
    loaded: list[str] = []

    class Recording(LocalOnlyTransport):
        def load(self, url: str) -> bytes:
            loaded.append(url)
            return super().load(url)

    transport = Recording()
    transport.wsdl_client.close()
    client = zeep.AsyncClient(str(wsdl), transport=transport, settings=zeep.Settings(strict=True))
    assert all(url.startswith(str(wsdl.parent)) for url in loaded) and len(loaded) == 2  # the WSDL and its types
    operations = {name for binding in client.wsdl.bindings.values() for name in binding._operations}
    assert operations == ({"RiceviFile"} if wsdl == RICEVI_FILE_WSDL else set(OPERATIONS))
    with pytest.raises(zeep.exceptions.TransportError, match="refusing to download"):
        transport.load("http://www.w3.org/2005/05/xmlmime")


def test_p18_operations_map_every_transmitter_callback() -> None:
    assert OPERATIONS == {
        "RicevutaConsegna": "RC",
        "NotificaMancataConsegna": "MC",
        "NotificaScarto": "NS",
        "NotificaDecorrenzaTermini": "DT",
        "NotificaEsito": "NE",
        "AttestazioneTrasmissioneFattura": "AT",
    }
    assert BODY_ELEMENTS["ricevutaConsegna"] == "RicevutaConsegna"
    assert BODY_ELEMENTS["attestazioneTrasmissioneFattura"] == "AttestazioneTrasmissioneFattura"


# ---------------------------------------------------------------------- notifications taken


@pytest.mark.parametrize("sign", [sdi_signed, sign_notification, plain_signed], ids=["sdi-xades", "xades", "plain"])
@pytest.mark.parametrize("root", list(BODIES))
def test_p18_signed_notification_of_each_kind_is_read(root: str, sign) -> None:
    file = sign(unsigned(root), SDI_KEY, SDI_CERT)
    notification = read_notification(file, SDI_CERT)
    assert notification.kind == {**OPERATIONS}[root]
    assert (notification.sdi_id, notification.file_name) == ("4321", "IT12345670017_0000A.xml")
    assert notification.message_id in {"77", "78", "79", "80", "81", "82"}
    if root in ("NotificaDecorrenzaTermini", "NotificaEsito"):
        assert notification.received_at is None
    else:
        assert notification.received_at == datetime(2026, 12, 1, 9, 15, 30, tzinfo=UTC)


def test_p18_each_kind_carries_its_own_fields() -> None:
    read = {root: read_notification(sdi_signed(unsigned(root)), SDI_CERT) for root in BODIES}
    assert read["RicevutaConsegna"].delivered_at == datetime(2026, 12, 1, 9, 16, tzinfo=UTC)
    assert read["RicevutaConsegna"].description == "consegnata"  # its Note
    assert read["NotificaMancataConsegna"].description == "In area riservata"
    assert [(error.code, error.description) for error in read["NotificaScarto"].errors] == [
        ("00404", "Fattura duplicata"),
        ("00305", "1.4.1.1.2 <IdCodice> non valido"),
    ]
    assert read["NotificaEsito"].description == "EC02: Importo errato"
    assert read["NotificaDecorrenzaTermini"].description == "Decorsi i termini"


def test_p18_a_time_without_offset_is_italian_time() -> None:
    xml = unsigned("NotificaMancataConsegna").replace(b"2026-12-01T10:15:30.000+01:00", b"2026-07-01T10:15:30")
    assert read_notification(sdi_signed(xml), SDI_CERT).received_at == datetime(2026, 7, 1, 8, 15, 30, tzinfo=UTC)


# ---------------------------------------------------------------------- notifications refused


def test_p18_unsigned_notification_is_refused() -> None:
    assert "not signed" in refused(unsigned("RicevutaConsegna"))


@pytest.mark.parametrize("sign", [sdi_signed, sign_notification, plain_signed], ids=["sdi-xades", "xades", "plain"])
def test_p18_notification_signed_by_another_key_is_refused(sign) -> None:
    forged = sign(unsigned("RicevutaConsegna"), OTHER_KEY, OTHER_CERT)
    assert "does not verify against the configured SdI certificate" in refused(forged)
    # The forger's own certificate in KeyInfo does not matter: only the configured one is trusted.
    assert read_notification(forged, OTHER_CERT).kind == "RC"


@pytest.mark.parametrize("sign", [sdi_signed, sign_notification, plain_signed], ids=["sdi-xades", "xades", "plain"])
def test_p18_notification_altered_after_signing_is_refused(sign) -> None:
    signed = sign(unsigned("NotificaScarto"), SDI_KEY, SDI_CERT)
    altered = signed.replace(b"<Codice>00404</Codice>", b"<Codice>00400</Codice>")
    assert altered != signed
    assert "Digest mismatch" in refused(altered)


def test_p18_signed_properties_altered_are_refused() -> None:
    altered = sdi_signed(unsigned("RicevutaConsegna")).replace(b"2026-12-01T10:16:01", b"2026-12-02T10:16:01")
    assert "Digest mismatch for reference 1" in refused(altered)


def test_p18_signature_over_part_of_the_document_is_refused() -> None:
    # SdI's key, a valid signature, but over its SignedProperties and KeyInfo only: none of the
    # notification's content is covered, so none of it is believed.
    partial = sdi_signed(unsigned("RicevutaConsegna"), cover_document=False)
    assert "does not cover the whole document" in refused(partial)


def test_p18_foreign_transform_is_refused_not_skipped() -> None:
    xslt = sdi_signed(unsigned("RicevutaConsegna"), transform="http://www.w3.org/TR/1999/REC-xslt-19991116")
    assert "transform http://www.w3.org/TR/1999/REC-xslt-19991116, not accepted" in refused(xslt)


def test_p18_filter_other_than_subtracting_the_signature_is_refused() -> None:
    intersect = sdi_signed(unsigned("RicevutaConsegna"), filter_kind="intersect")
    assert "otherwise than by subtracting its ds:Signature" in refused(intersect)


def test_p18_schema_invalid_notification_is_refused() -> None:
    no_message_id = unsigned("RicevutaConsegna").replace(b"<MessageId>77</MessageId>", b"")
    message = refused(sdi_signed(no_message_id))
    assert message.startswith("notification is not valid against MessaggiTypes_v1.1.xsd: line ")
    assert "MessageId" in message


def test_p18_receiver_side_or_foreign_document_is_refused() -> None:
    metadata = (
        f'<types:MetadatiInvioFile xmlns:types="{MESSAGES_NS}" versione="1.0"><IdentificativoSdI>1</IdentificativoSdI>'
        "</types:MetadatiInvioFile>"
    ).encode()
    assert "is not one of SdI's notifications to a transmitter" in refused(metadata)
    other_family = (
        b'<r:RicevutaScarto xmlns:r="http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fattura/messaggi/v1.0"/>'
    )
    assert "RicevutaScarto is not one of SdI's notifications" in refused(other_family)


def test_p18_entity_expansion_is_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        + f'<types:NotificaScarto xmlns:types="{MESSAGES_NS}" versione="1.0"><NomeFile>&c;</NomeFile>'.encode()
        + b"</types:NotificaScarto>"
    )
    assert "DOCTYPE" in refused(bomb)


def test_p18_external_doctype_is_refused() -> None:
    external = (
        b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://example.invalid/evil.dtd">'
        + unsigned("RicevutaConsegna").split(b"\n", 1)[1]
    )
    assert "DOCTYPE" in refused(external)


def test_p18_oversized_or_unreadable_notification_is_refused() -> None:
    signed = sdi_signed(unsigned("RicevutaConsegna"))
    padded = signed.replace(b"<Note>consegnata</Note>", b"<Note>" + b"x" * NOTIFICATION_LIMIT + b"</Note>")
    assert "over the 1000000-byte limit" in refused(padded)
    assert "not well-formed XML" in refused(b"PK\x03\x04 a zip, not XML")
    assert "not well-formed XML" in refused(signed[: len(signed) // 2])


# ---------------------------------------------------------------------- callbacks


def soap_request(
    element: str, *, file: str, sdi_id: str = "4321", name: str = "IT12345670017_0000A_RC_001.xml"
) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV_NS}" '
        f'xmlns:types="{TYPES_NS}"><soapenv:Header/><soapenv:Body><types:{element}>'
        f"<IdentificativoSdI>{sdi_id}</IdentificativoSdI><NomeFile>{name}</NomeFile>{file}"
        f"</types:{element}></soapenv:Body></soapenv:Envelope>"
    ).encode()


def test_p18_callback_with_inline_file_is_read() -> None:
    notification = sdi_signed(unsigned("RicevutaConsegna"))
    encoded = base64.encodebytes(notification).decode()  # wrapped at 76 columns, as many SOAP stacks send it
    callback = read_callback(
        soap_request("ricevutaConsegna", file=f"<File>{encoded}</File>"), "text/xml; charset=utf-8"
    )
    assert (callback.operation, callback.kind, callback.sdi_id) == ("RicevutaConsegna", "RC", "4321")
    assert callback.notification_name == "IT12345670017_0000A_RC_001.xml"
    assert callback.file == notification
    assert read_notification(callback.file, SDI_CERT).kind == "RC"


def mtom(envelope: bytes, attachment: bytes, *, content_id: str = "file-1@sdi.example") -> tuple[bytes, str]:
    boundary = "MIMEBoundary_d8e6a2"
    body = (
        f'--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type="text/xml"\r\n'
        f"Content-Transfer-Encoding: binary\r\nContent-ID: <root.message@sdi.example>\r\n\r\n".encode()
        + envelope
        + f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: <{content_id}>\r\n\r\n".encode()
        + attachment
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = (
        f'multipart/related; type="application/xop+xml"; start="<root.message@sdi.example>"; '
        f'start-info="text/xml"; boundary="{boundary}"'
    )
    return body, content_type


def test_p18_callback_as_mtom_is_read() -> None:
    notification = sdi_signed(unsigned("NotificaScarto"))
    include = (
        '<File><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:file-1%40sdi.example"/></File>'
    )
    body, content_type = mtom(soap_request("notificaScarto", file=include), notification)
    callback = read_callback(body, content_type)
    assert (callback.operation, callback.kind) == ("NotificaScarto", "NS")
    assert callback.file == notification  # byte for byte: CRLFs inside the attachment kept
    assert [error.code for error in read_notification(callback.file, SDI_CERT).errors] == ["00404", "00305"]


GOOD_FILE = "<File>" + base64.b64encode(b"<x/>").decode() + "</File>"


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"hello", "text/xml", "not well-formed XML"),
        (b"<a/>", "text/xml", "is not a SOAP 1.1 Envelope"),
        (soap_request("ricevutaConsegna", file=GOOD_FILE), "application/json", "is not SOAP 1.1 (text/xml) or MTOM"),
        (soap_request("ricevutaConsegna", file=GOOD_FILE), "application/soap+xml", "SOAP 1.2 request"),
        (
            soap_request("ricevutaConsegna", file=GOOD_FILE).replace(
                SOAP_ENV_NS.encode(), b"http://www.w3.org/2003/05/soap-envelope"
            ),
            "text/xml",
            "SOAP 1.2 envelope",
        ),
        (soap_request("riceviFatture", file=GOOD_FILE), "text/xml", "is not a TrasmissioneFatture operation"),
        (soap_request("ricevutaConsegna", file=""), "text/xml", "RicevutaConsegna: File missing"),
        (
            soap_request("notificaScarto", file="<File>not base64!</File>"),
            "text/xml",
            "NotificaScarto: File is not base64",
        ),
        (soap_request("ricevutaConsegna", file="<File></File>"), "text/xml", "File is empty"),
        (soap_request("ricevutaConsegna", file=GOOD_FILE, sdi_id="1234567890123"), "text/xml", "is not 1 to 12 digits"),
        (soap_request("ricevutaConsegna", file=GOOD_FILE, sdi_id="12a"), "text/xml", "is not 1 to 12 digits"),
        (soap_request("ricevutaConsegna", file=GOOD_FILE, name="x.xml"), "text/xml", "NomeFile 'x.xml' is not 9-50"),
        (
            soap_request("ricevutaConsegna", file=GOOD_FILE).replace(
                b"<IdentificativoSdI>4321</IdentificativoSdI>", b""
            ),
            "text/xml",
            "IdentificativoSdI missing",
        ),
        (
            soap_request("ricevutaConsegna", file=GOOD_FILE)
            .replace(b"<NomeFile>", b"<types:NomeFile>")
            .replace(b"</NomeFile>", b"</types:NomeFile>"),
            "text/xml",
            "unexpected element",
        ),
        (
            b'<!DOCTYPE e [<!ENTITY x "y">]>' + soap_request("ricevutaConsegna", file=GOOD_FILE).split(b"?>", 1)[1],
            "text/xml",
            "DOCTYPE",
        ),
        (b"<a>" + b" " * 5_000_000 + b"</a>", "text/xml", "over the 5000000-byte limit"),
        (b"--x\r\n", "multipart/related; boundary=x", "not closed by its boundary"),
    ],
)
def test_p18_anything_but_an_sdi_callback_is_refused(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(CallbackRefused) as caught:
        read_callback(body, content_type)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_p18_mtom_include_naming_no_attachment_is_refused() -> None:
    include = '<File><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:elsewhere"/></File>'
    body, content_type = mtom(soap_request("ricevutaConsegna", file=include), b"<x/>")
    with pytest.raises(CallbackRefused, match="names no attachment"):
        read_callback(body, content_type)


def test_p18_answers_are_soap_11_envelopes() -> None:
    empty = etree.fromstring(callback_answer())
    assert empty.tag == f"{{{SOAP_ENV_NS}}}Envelope"
    body = empty.find(f"{{{SOAP_ENV_NS}}}Body")
    assert body is not None and len(body) == 0
    for server, code in ((False, "soapenv:Client"), (True, "soapenv:Server")):
        fault = etree.fromstring(soap_fault("notification <refused> & why", server=server))
        assert fault.findtext(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault/faultcode") == code
        assert (
            fault.findtext(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault/faultstring")
            == "notification <refused> & why"
        )
