"""The web console's pages: static files the daemon serves on its TCP listener.

The pages are plain HTML, CSS and JavaScript modules shipped in the wheel
(``console_pages/``), read once at import and served from memory under ``/console/``;
nothing is fetched from anywhere else (the Content-Security-Policy below says so to the
browser too). They hold no data: the browser asks the control API for everything, with
the tenant's bearer token, so the console sees exactly what that token sees.

Why a token typed into a login page and kept in ``sessionStorage``, not a login that sets
a cookie: the API already authenticates every request by its bearer token, so the console
is one more API client and adds no second credential; a header the page's script sets is
never sent by the browser on its own, so no request forged by another site carries it
(no CSRF surface); and the token lives as long as the tab. The event stream is read with
``fetch`` (EventSource cannot send a header) and a recording is fetched the same way and
played from memory.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

__all__ = ["CONSOLE", "PAGES", "SECURITY_HEADERS", "install_console"]

CONSOLE: Final = "/console/"

_MEDIA_TYPES: Final = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}

# Same origin only: no inline script, no remote font or script; recordings play from a
# blob: URL, and inline SVG plots need no source at all.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read_pages() -> dict[str, tuple[bytes, str]]:
    """Every file under ``console_pages/`` by its path there, with its media type."""
    root = resources.files("engine.api") / "console_pages"
    pages: dict[str, tuple[bytes, str]] = {}
    folders = [("", root)]
    while folders:
        prefix, folder = folders.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                folders.append((f"{prefix}{entry.name}/", entry))
                continue
            suffix = "." + entry.name.rpartition(".")[2]
            if suffix in _MEDIA_TYPES:
                pages[prefix + entry.name] = (entry.read_bytes(), _MEDIA_TYPES[suffix])
    return pages


# path under /console/ -> (body, media type); "" is the page itself
PAGES: Final = _read_pages()


async def _page(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "") or "index.html"
    found = PAGES.get(name)
    if found is None:
        raise web.HTTPNotFound()
    body, media_type = found
    return web.Response(
        body=body, content_type=media_type, charset="utf-8", headers=SECURITY_HEADERS
    )


async def _to_console(request: web.Request) -> web.Response:
    # returned, not raised: the error middleware turns a raised HTTPException into JSON
    return web.Response(status=302, headers={"Location": CONSOLE})


def install_console(app: web.Application) -> None:
    """Serve the console under ``/console/`` (``/`` and ``/console`` lead there)."""
    app.router.add_get("/", _to_console)
    app.router.add_get("/console", _to_console)
    app.router.add_get(CONSOLE + "{name:.*}", _page)
