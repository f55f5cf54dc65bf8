"""The example payloads of the OpenAPI document (ingress/openapi.py): each route names its own with
`responses=` or its `JsonBody`. Data only, the demo services of `make run` (stack/demo.py); every
example is checked against its schema by tests/test_openapi_contract.py, the invoice against the
FatturaPA schema.
"""

from datetime import date
from typing import Any

from renewals.billing import Address, BillingData, Seller
from renewals.invoice import InvoiceOrder, build_invoice
from renewals.payments import IBAN
from renewals.pricing import quote
from renewals.records import OrderLine

ORDER: dict[str, Any] = {
    "order_number": "FE-2026-000123",
    "stage": "AWAITING_PAYMENT",
    "years": 1,
    "payment_method": "bank_transfer",
    "lines": [
        {
            "product": "service",
            "label": "Fatturazione Elettronica Solo Ricezione",
            "quantity": 1,
            "years": 1,
            "unit_price_cents": 2500,
            "net_cents": 2500,
        }
    ],
    "net_cents": 2500,
    "discount_cents": 0,
    "vat_cents": 550,
    "total_cents": 3050,
    "paid_cents": 0,
    "balance_cents": 3050,
    "due_by": "2026-12-29T10:00:00Z",
    "payment_instructions": {
        "order_number": "FE-2026-000123",
        "amount_cents": 3050,
        "bank_transfer": {
            "beneficiary": "Renewals S.p.A.",
            "iban": "IT60X0542811101000000123456",
            "reason": "Rinnovo ordine FE-2026-000123",
        },
        "postal_slip": {
            "account": "123456789",
            "beneficiary": "Renewals S.p.A.",
            "reason": "Rinnovo ordine FE-2026-000123",
        },
    },
    "new_expires_on": None,
}
CART: dict[str, Any] = {
    "stage": "CART",
    "mode": "renew",
    "username": "demo-active",
    "expires_on": "2027-02-01",
    "active_addons": [{"addon": "extra_users", "quantity": 2}],
    "cart_addons": [],
    "available_addons": [{"addon": "extra_storage", "quantity": 1}],
    "discount": None,
    "allowed_years": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    "storage_alert": None,
    "quote": {"net_cents": 3500, "discount_cents": 0, "vat_cents": 770, "total_cents": 4270},
    "order": None,
}
PANEL_EVENTS: dict[str, dict[str, Any]] = {
    "renew_requested": {"type": "renew_requested", "username": "demo-active"},
    "reactivate_requested": {"type": "reactivate_requested", "username": "demo-expired"},
    "addon_added": {"type": "addon_added", "username": "demo-active", "addon": "extra_storage", "quantity": 1},
    "addon_removed": {"type": "addon_removed", "username": "demo-active", "addon": "extra_storage"},
    "discount_code_applied": {"type": "discount_code_applied", "username": "demo-active", "code": "PARTNER10"},
    "checkout_submitted": {
        "type": "checkout_submitted",
        "username": "demo-active",
        "payment_method": "bank_transfer",
        "years": 1,
    },
    "auto_renew_changed": {
        "type": "auto_renew_changed",
        "username": "demo-active",
        "auto_renew": True,
        "method": "card",
    },
}
PAYMENT: dict[str, Any] = {
    "type": "payment_registered",
    "order_number": "FE-2026-000123",
    "transaction_id": "BT-7781",
    "amount_cents": 3050,
    "currency": "EUR",
    "method": "bank_transfer",
    "registered_at": "2026-11-27T10:00:00Z",
}
# P20: the back office's word on a charge request (`attempt`, from `charge_requested`).
CHARGE_SUCCEEDED: dict[str, Any] = {
    "type": "charge_succeeded",
    "order_number": "FE-2026-000123",
    "attempt": "FE-2026-000123/1",
    "transaction_id": "PSP-ch_3Q9",
    "amount_cents": 3050,
    "currency": "EUR",
    "method": "card",
    "registered_at": "2026-11-27T10:00:00Z",
}
CHARGE_FAILED: dict[str, Any] = {
    "type": "charge_failed",
    "order_number": "FE-2026-000123",
    "attempt": "FE-2026-000123/1",
    "decline": "soft",
    "code": "insufficient_funds",
    "message": "Your card has insufficient funds.",
}
CHARGE_OUTCOME: dict[str, Any] = {
    "status": "recorded",
    "order_number": "FE-2026-000123",
    "attempt": "FE-2026-000123/1",
    "note": None,
}
OUTCOME: dict[str, Any] = {
    "status": "applied",
    "order_number": "FE-2026-000123",
    "transaction_id": "BT-7781",
    "paid_cents": 3050,
    "balance_cents": 0,
    "refund_cents": 0,
}
SERVICE: dict[str, Any] = {
    "username": "demo-active",
    "status": "active",
    "expires_on": "2027-02-01",
    "auto_renew": False,
    "action": "renew",
    "reason": None,
    "auto_renew_method": None,
    "auto_renew_years": 1,
    "next_notice_on": "2027-01-02",
    "next_notice_kind": "before-30",
    "next_auto_order_on": None,
}
SERVICE_AUTO_RENEW: dict[str, Any] = {
    **SERVICE,
    "auto_renew": True,
    "action": None,
    "reason": "auto-renew is on: the service renews by itself at expiry, so Renew is not offered (R1)",
    "auto_renew_method": "card",
    "next_notice_on": "2027-02-02",
    "next_notice_kind": "expired",
    "next_auto_order_on": "2027-01-02",
}
RENEWAL: dict[str, Any] = {
    "stage": "AWAITING_PAYMENT",
    "mode": "renew",
    "username": "demo-active",
    "reason": None,
    "cart": {**CART, "stage": "AWAITING_PAYMENT", "order": ORDER},
    "order": ORDER,
    "payments": [],
    "emails": ["FE-2026-000123:payment_instructions"],
}
RECEIPTS: dict[str, Any] = {
    "number": "FT-2026-000001",
    "order_number": "FE-2026-000123",
    "state": "delivered",
    "delivered_at": "2026-12-01T10:00:07Z",
    "note": None,
    "transmissions": [
        {
            "file_name": "IT12345670017_00001.xml",
            "state": "accepted",
            "sdi_id": "111",
            "received_at": "2026-12-01T10:00:02Z",
            "attempts": 1,
            "last_error": None,
        }
    ],
    "receipts": [
        {
            "kind": "RC",
            "sdi_id": "111",
            "file_name": "IT12345670017_00001.xml",
            "notification_name": "IT12345670017_00001_RC_001.xml",
            "message_id": "1",
            "received_at": "2026-12-01T10:00:08Z",
            "file": "PD94bWwgdmVyc2lvbj0iMS4wIj8+Li4u",
            "detail": {"delivered_at": "2026-12-01T10:00:07Z"},
        }
    ],
}
HEALTH_UP: dict[str, Any] = {"status": "ok", "postgres": "ok", "temporal": "ok"}
HEALTH_DOWN: dict[str, Any] = {"status": "down", "postgres": "ok", "temporal": "down"}


def invoice() -> str:
    """P17: a whole invoice as `GET /panel/invoices/{number}` answers it, built and checked by the
    same code (renewals/invoice.py), for the demo order of one year paid by bank transfer."""
    line = OrderLine(
        product="service",
        label="Fatturazione Elettronica Solo Ricezione",
        quantity=1,
        years=1,
        unit_price_cents=2500,
        net_cents=2500,
    )
    address = Address(street="Via Nazionale 10", cap="00184", comune="Roma", provincia="RM")
    invoice = build_invoice(
        InvoiceOrder(
            order_number="FE-2026-000123",
            username="demo-active",
            lines=[line],
            quote=quote([line], None),
            payment_method="bank_transfer",
            period_start=date(2027, 2, 2),
            period_end=date(2028, 2, 1),
        ),
        BillingData(
            holder_type="company",
            company_name="Demo Active S.r.l.",
            vat_number="09876540015",
            address=address,
            pec="demo-active@pec.example.it",
        ),
        Seller(name="Renewals S.p.A.", vat_number="12345670017", address=address, iban=IBAN),
        year=2026,
        progressive=1,
        issued_on=date(2026, 11, 27),
        file_id=1,
    )
    return invoice.xml.decode()


# P19: a statement's import, as `POST /payments/statements` answers it.
STATEMENT_IMPORT: dict[str, Any] = {
    "id": "9f2c4e0b7d1a" + "0" * 52,
    "source": "http",
    "file_name": "cbi-2026-03-02.xml",
    "received_at": "2026-03-02T07:10:00Z",
    "state": "stored",
    "version": "camt.053.001.02",
    "message_id": "CBI-20260302-0001",
    "counts": {"entries": 12, "applied": 0, "unmatched": 0, "duplicates": 0, "ignored": 0},
    "outcomes": {},
    "failure": None,
    "finished_at": None,
    "already": False,
}

# P19: a camt.053.001.02 statement of one credit quoting its RF reference, as a bank writes it.
STATEMENT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
<BkToCstmrStmt>
<GrpHdr>
<MsgId>CBI-20260302-0001</MsgId>
<CreDtTm>2026-03-02T23:30:00+01:00</CreDtTm>
</GrpHdr>
<Stmt>
<Id>STMT-CBI-20260302-0001</Id>
<CreDtTm>2026-03-02T23:30:00+01:00</CreDtTm>
<Acct>
<Id>
<IBAN>IT60X0542811101000000123456</IBAN>
</Id>
<Ccy>EUR</Ccy>
</Acct>
<Bal>
<Tp>
<CdOrPrtry>
<Cd>CLBD</Cd>
</CdOrPrtry>
</Tp>
<Amt Ccy="EUR">0.00</Amt>
<CdtDbtInd>CRDT</CdtDbtInd>
<Dt>
<Dt>2026-03-02</Dt>
</Dt>
</Bal>
<Ntry>
<Amt Ccy="EUR">30.50</Amt>
<CdtDbtInd>CRDT</CdtDbtInd>
<Sts>BOOK</Sts>
<BookgDt>
<Dt>2026-03-02</Dt>
</BookgDt>
<ValDt>
<Dt>2026-03-02</Dt>
</ValDt>
<AcctSvcrRef>CBI-0001</AcctSvcrRef>
<BkTxCd>
<Domn>
<Cd>PMNT</Cd>
<Fmly>
<Cd>RCDT</Cd>
<SubFmlyCd>ESCT</SubFmlyCd>
</Fmly>
</Domn>
</BkTxCd>
<NtryDtls>
<TxDtls>
<RltdPties>
<Dbtr>
<Nm>ROSSI MARIO</Nm>
</Dbtr>
</RltdPties>
<RmtInf>
<Strd>
<CdtrRefInf>
<Tp>
<CdOrPrtry>
<Cd>SCOR</Cd>
</CdOrPrtry>
</Tp>
<Ref>RF18539007547034</Ref>
</CdtrRefInf>
</Strd>
</RmtInf>
</TxDtls>
</NtryDtls>
</Ntry>
</Stmt>
</BkToCstmrStmt>
</Document>
"""
