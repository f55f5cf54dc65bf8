"""The customer's pages under /ui/, in Italian: the renewal as the help page walks through it
(docs/customer-pages.md; R1–R7).

Home (*Stato servizio* with **Rinnova** or **Riattiva**, or why neither: `home`), the cart
(`cart`), the *Modulo d'ordine*, the confirmation with the payment instructions and the renewal's
status (`order`), sign-in and sign-out (`sign_in`), htmx and the style sheet (`static`). Each is a
module-level router of `PageRoute`s; what they share (`site.Pages`: the `Renewals` operations, the
settings' limits, the panel secrets, the sessions in PostgreSQL, the Jinja environment) lives on
`app.state.pages` and reaches a page through the dependencies of `deps` (the signed-in customer,
the CSRF check of every POST, the rate limit and the code lockout), never a closure.

`include` is the one entry point, for the app factory (ingress/http.py `create_app`). The local
stack's dev pages (sign in as any demo service, the payments back office) are not here: only the
stack mounts them (stack/dev_pages.py), and nothing under ingress/ imports `stack`.
"""

from fastapi import FastAPI

from client.renewals import Renewals
from ingress.pages import auto_renew, cart, dunning, home, order, sign_in, static
from ingress.pages.site import Pages
from settings import load_settings

ROUTERS = (
    static.router,
    sign_in.router,
    dunning.router,
    home.router,
    auto_renew.router,
    cart.router,
    order.router,
)


def include(app: FastAPI, ingress: Renewals, panel_secrets: tuple[str, ...]) -> None:
    """Mount the /ui/ pages on `app`, served through `ingress`. `panel_secrets`: one value, or the
    current and the previous during a rotation (either verifies, the current signs). The pages'
    own settings (PANEL_UI_URL, PANEL_UI_RATE_PER_MINUTE, PANEL_UI_BURST, PANEL_UI_CODE_*) are
    read from the environment now."""
    settings = load_settings(PANEL_SECRET=",".join(panel_secrets))
    app.state.pages = Pages(ingress, settings, panel_secrets)
    for router in ROUTERS:
        app.include_router(router)
