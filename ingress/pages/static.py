"""The pages' own files under /ui/static/: htmx (pinned, ingress/pages/static/README.md) and the
style sheet, read once and served by the ingress; no CDN, no build."""

from fastapi.responses import Response

from ingress.pages.site import HERE, Refused, page_router

router = page_router()

FILES = {
    "htmx.min.js": ((HERE / "static" / "htmx.min.js").read_bytes(), "text/javascript"),
    "ui.css": ((HERE / "static" / "ui.css").read_bytes(), "text/css"),
}


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    if name not in FILES:
        raise Refused(404, "Non trovato", "Questo file non esiste.")
    content, media_type = FILES[name]
    return Response(content, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
