"""A request's body read within a bound, for every route that reads one itself."""

from starlette.requests import Request


async def read_bounded(request: Request, limit: int, too_large: Exception) -> bytes:
    """The body as sent; `too_large` raised past `limit` bytes: by its declared length before a
    byte is read, else as soon as the bytes read pass the bound."""
    declared = request.headers.get("content-length")
    if declared and (not (declared.isascii() and declared.isdigit()) or int(declared) > limit):
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large
    return b"".join(chunks)
