"""The signed HTTP API's routers (docs/api.md), each module-level, each included once by
ingress/http.py `create_app`:

- `panel`: `POST /panel/events`; `reads`: `GET /panel/services/{username}`,
  `GET /panel/renewals/{username}`; `invoices`: `GET /panel/invoices/{number}` and its `/receipts`,
  all signed with PANEL_SECRET (P21);
- `payments`: `POST /payments/events`, signed with PAYMENTS_SECRET;
- `health`: `GET /healthz`, unsigned; `sdi`: SdI's SOAP callback (P18), outside the document;
- `admin`: the admin app's `/openapi.json`, `/docs`, `/redoc` and `/metrics`.

What they share lives in `deps` (the app's state, the body, the signature, the strict body) and
`errors` (the `Error` body and the exception handlers); `examples` holds the document's examples.
"""
