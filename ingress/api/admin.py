"""The admin app's own routes (docs/production.md): the public app's OpenAPI document
(`/openapi.json`, browsable at `/docs` and `/redoc`) and its Prometheus counts (`/metrics`,
ingress/metrics.py). Unsigned, never on the public port: the admin port is loopback unless
configured otherwise. `/healthz` is the public app's own route (ingress/api/health.py), on both.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(include_in_schema=False)


def public_app(request: Request) -> FastAPI:
    """The public app this admin app shows (`app.state.public`, set by ingress/http.py)."""
    public: FastAPI = request.app.state.public
    return public


PublicApp = Annotated[FastAPI, Depends(public_app)]


@router.get("/openapi.json")
async def openapi(public: PublicApp) -> JSONResponse:
    return JSONResponse(public.openapi())


@router.get("/docs")
async def docs(public: PublicApp) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=public.title)


@router.get("/redoc")
async def redoc(public: PublicApp) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=public.title)


@router.get("/metrics")
async def metrics(public: PublicApp) -> Response:
    return Response(generate_latest(public.state.metrics), media_type=CONTENT_TYPE_LATEST)
