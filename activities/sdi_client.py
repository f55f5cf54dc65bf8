"""The SOAP client of SdI's `SdIRiceviFile` service (P18): one call, `RiceviFile`, that hands SdI an
invoice file and reads its answer. Not an activity: the SdI activity holds one `RiceviFileClient`.

Built from the published WSDL in `renewals/fatturapa/sdicoop/` (never downloaded: the transport
refuses to load anything but local files), over httpx with the transmitter's TLS client
certificate. A failure says whether SdI may hold the file: `SdiUnreachable` when the request
certainly never reached it (safe to send again), `SdiInDoubt` when it may have.
"""

import ssl
from datetime import datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import zeep
import zeep.exceptions
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport

from renewals.dates import ROME
from renewals.sdicoop import RICEVI_FILE_WSDL, Acceptance

BINDING = "{http://www.fatturapa.gov.it/sdi/ws/trasmissione/v1.0}SdIRiceviFile_binding"
# Enough to connect to SdI; the whole answer gets the client's `timeout`.
CONNECT_TIMEOUT = 10.0
# erroreInvio_Type: empty file, service unavailable, transmitter not enabled.
ERRORS = ("EI01", "EI02", "EI03")


class SdiUnreachable(Exception):
    """The request never reached SdI (connection refused, DNS, connect timeout, TLS handshake):
    SdI certainly does not hold the file."""


class SdiInDoubt(Exception):
    """The request may have reached SdI but no usable answer came back (read timeout, connection
    reset, HTTP 5xx, a SOAP fault, an unreadable answer): SdI may hold the file."""


class LocalOnlyTransport(AsyncTransport):
    """zeep's async transport that loads the WSDL and its schemas from local files only."""

    def load(self, url: str) -> bytes:
        if urlsplit(url).scheme not in ("", "file"):
            raise zeep.exceptions.TransportError(f"refusing to download {url}: the SDICoop definitions are local")
        content: bytes = super().load(url)
        return content


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(client_cert: Path | None, client_key: Path | None, ca: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if client_cert is not None:
        context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return context


class RiceviFileClient:
    """`send` one file to SdI's RiceviFile endpoint at `url` (https, or http on loopback only)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        ca: Path | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SdI RiceviFile url must be an https:// URL, got {url!r}")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError(f"SdI RiceviFile url must be https:// unless on loopback, got {url!r}")
        if client_key is not None and client_cert is None:
            raise ValueError("client_key given without client_cert")
        self.url = url
        self._http = httpx.AsyncClient(
            verify=_tls(client_cert, client_key, ca),
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            follow_redirects=False,
        )
        self._transport = LocalOnlyTransport(client=self._http)
        # The transport's own client for remote WSDLs is never used (see LocalOnlyTransport).
        self._transport.wsdl_client.close()
        settings = zeep.Settings(strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True)
        client = zeep.AsyncClient(str(RICEVI_FILE_WSDL), transport=self._transport, settings=settings)
        # AsyncClient.create_service hands back a synchronous proxy (zeep 4.3): build the async one.
        self._service: Any = AsyncServiceProxy(client, client.wsdl.bindings[BINDING], address=url)

    async def send(self, file_name: str, file: bytes) -> Acceptance:
        """Hand `file` to SdI under `file_name`; SdI's answer, or SdiUnreachable / SdiInDoubt."""
        try:
            answer = await self._service.RiceviFile(NomeFile=file_name, File=file)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as error:
            raise SdiUnreachable(f"SdI at {self.url} not reached: {type(error).__name__}: {error}") from error
        except httpx.HTTPError as error:
            raise SdiInDoubt(f"no answer from SdI at {self.url}: {type(error).__name__}: {error}") from error
        except zeep.exceptions.Fault as error:
            raise SdiInDoubt(f"SdI at {self.url} answered with a SOAP fault: {error.code}: {error.message}") from error
        except zeep.exceptions.TransportError as error:
            raise SdiInDoubt(f"SdI at {self.url} answered HTTP {error.status_code}: {error.message[:200]}") from error
        except zeep.exceptions.Error as error:
            raise SdiInDoubt(f"SdI at {self.url} gave an unreadable answer: {error}") from error
        if answer is None or answer.IdentificativoSdI is None or answer.DataOraRicezione is None:
            raise SdiInDoubt(f"SdI at {self.url} answered without IdentificativoSdI and DataOraRicezione")
        # Through its text: zeep's offsets are isodate's FixedOffset, not datetime.timezone.
        received_at = datetime.fromisoformat(answer.DataOraRicezione.isoformat())
        if received_at.tzinfo is None:  # SdI writes Italian time
            received_at = received_at.replace(tzinfo=ROME)
        if answer.Errore is not None:
            if answer.Errore not in ERRORS:
                raise SdiInDoubt(f"SdI at {self.url} answered Errore {str(answer.Errore)[:20]!r}, not EI01-EI03")
            return Acceptance(sdi_id=None, received_at=received_at, error=answer.Errore)
        return Acceptance(sdi_id=str(answer.IdentificativoSdI), received_at=received_at)

    async def aclose(self) -> None:
        await self._http.aclose()
