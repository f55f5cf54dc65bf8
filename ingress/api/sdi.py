"""SdI's callbacks (P18, docs/sdi.md): the `TrasmissioneFatture` service a transmitter exposes over
SDICoop, at `POST /sdi/TrasmissioneFatture` (SOAP 1.1, plain or MTOM; its contract is the official
WSDL in renewals/fatturapa/sdicoop/, not the OpenAPI document). Unsigned by P21: SdI's own XML
signature (SDI_SIGNING_CERT) is what is checked.

Each notification must be a SOAP request of a known operation, its file must validate against
MessaggiTypes_v1.1.xsd and verify against SdI's certificate (SDI_SIGNING_CERT), and it must name
a file of ours: anything else is answered with a SOAP fault, recorded for ops, and changes nothing.
An accepted one is stored unchanged, then told to its invoice's delivery workflow, which decides.
The same notification again changes nothing and is recorded; it is acknowledged when its bytes
are the ones kept (SdI retrying a delivery whose answer it lost), refused otherwise.
"""

import logging
from typing import Literal

import asyncpg
from fastapi import APIRouter, Request, Response
from temporalio.service import RPCError

from client.payments import closed
from db import sdi as table
from ingress.api.deps import ApiDep
from ingress.bodies import read_bounded
from renewals import DELIVERY_NOTICE_SIGNAL, delivery_id
from renewals.delivery import Notice
from renewals.sdicoop import (
    Callback,
    CallbackRefused,
    Notification,
    NotificationRefused,
    callback_answer,
    read_callback,
    read_notification,
    soap_fault,
)

MAX_CALLBACK_BYTES = 5 * 1024 * 1024
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"

router = APIRouter(prefix="/sdi", include_in_schema=False)
log = logging.getLogger("renewals.ingress.sdi")


class Refused(Exception):
    def __init__(self, reason: str, callback: Callback | None = None) -> None:
        super().__init__(reason)
        self.reason, self.callback = reason, callback


def fault(reason: str, *, server: bool = False) -> Response:
    # SOAP 1.1 answers a fault with HTTP 500 (WS-I Basic Profile), whoever is at fault.
    return Response(soap_fault(reason, server=server), status_code=500, media_type=SOAP_CONTENT_TYPE)


def verified(body: bytes, content_type: str, certificate: bytes | None) -> tuple[Callback, Notification]:
    if certificate is None:
        raise Refused("SDI_SIGNING_CERT is not configured: no notification can be verified")
    try:
        callback = read_callback(body, content_type)
    except CallbackRefused as error:
        raise Refused(str(error)) from None
    try:
        notification = read_notification(callback.file, certificate)
    except NotificationRefused as error:
        raise Refused(str(error), callback) from None
    if notification.kind != callback.kind:
        raise Refused(f"{callback.operation} carries a {notification.kind} notification", callback)
    if notification.sdi_id != callback.sdi_id:
        raise Refused(
            f"the request's IdentificativoSdI {callback.sdi_id} is not the notification's {notification.sdi_id}",
            callback,
        )
    return callback, notification


async def stored(
    pool: asyncpg.Pool, body: bytes, content_type: str, certificate: bytes | None
) -> tuple[Callback, Notification, table.NotificationOwner, Literal["new", "same"]]:
    """The notification, verified, of a file of ours, and kept unchanged: `new`, or `same` as the one
    kept before (SdI again, its first delivery's answer lost). Anything else is refused."""
    callback, notification = verified(body, content_type, certificate)
    owner = await table.owner_of(pool, notification)
    if owner is None:
        raise Refused(
            f"no invoice of ours was sent as {notification.file_name} with IdentificativoSdI {notification.sdi_id}",
            callback,
        )
    kept = await table.store_notification(pool, owner, notification, callback.notification_name, callback.file)
    if kept == "different":
        raise Refused(
            f"{notification.kind} {notification.message_id} for {notification.sdi_id} was received before "
            "with another content: the first one stands",
            callback,
        )
    return callback, notification, owner, kept


async def record_refused(pool: asyncpg.Pool, reason: str, body: bytes, callback: Callback | None) -> None:
    await table.record_refused_callback(
        pool,
        reason,
        body,
        operation=callback.operation if callback else None,
        sdi_id=callback.sdi_id if callback else None,
        notification_name=callback.notification_name if callback else None,
    )


def notice_of(notification: Notification) -> Notice:
    return Notice(
        kind=notification.kind,
        sdi_id=notification.sdi_id,
        file_name=notification.file_name,
        message_id=notification.message_id,
        delivered_at=notification.delivered_at,
        errors=[f"{error.code} {error.description}" for error in notification.errors],
        description=notification.description,
    )


def not_told(notification: Notification) -> Response:
    log.exception("SdI notification %s stored, not yet told to its delivery", notification.message_id)
    return fault("stored; the delivery could not be told now: try again", server=True)


@router.post("/TrasmissioneFatture")
async def trasmissione_fatture(request: Request, api: ApiDep) -> Response:
    pool = api.ingress.store.pool
    body = b""
    try:
        too_large = Refused(f"the request is larger than {MAX_CALLBACK_BYTES} bytes")
        body = await read_bounded(request, MAX_CALLBACK_BYTES, too_large)
        content_type = request.headers.get("content-type", "")
        callback, notification, owner, kept = await stored(pool, body, content_type, api.sdi_signing_cert)
    except Refused as refusal:
        log.warning("SdI callback refused: %s", refusal.reason)
        await record_refused(pool, refusal.reason, body, refusal.callback)
        return fault(refusal.reason)
    # Told every time, a repeat too: the workflow ignores what it has seen, and a notification
    # stored while Temporal did not answer is told when SdI tries again.
    try:
        handle = api.ingress.client.get_workflow_handle(delivery_id(owner.number))
        await handle.signal(DELIVERY_NOTICE_SIGNAL, notice_of(notification))
    except RPCError as error:
        if not closed(error):  # a finished delivery (a DT after the RC, a repeat): kept, nothing to tell
            return not_told(notification)
    except Exception:  # noqa: BLE001 - stored: SdI's retry tells the workflow; the log says why
        return not_told(notification)
    if kept == "same":
        # SdI again, its first delivery's answer lost: acknowledged, so it stops; nothing changes.
        reason = f"repeated {notification.kind} {notification.message_id} for {notification.sdi_id}: changed nothing"
        await record_refused(pool, reason, body, callback)
    return Response(callback_answer(), media_type=SOAP_CONTENT_TYPE)
