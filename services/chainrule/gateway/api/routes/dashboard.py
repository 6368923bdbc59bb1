"""The dashboard: one HTML page at ``/`` and the few files it loads from ``/static/``.

The page is plain HTML and a small script (``gateway/static/``) that read the REST API.
Its charts are drawn by plotly.js, served from the copy that the ``plotly`` Python
package ships, so the dashboard needs no CDN and no network beyond the gateway.
Only the files named in :data:`ASSETS` are served: a request cannot reach any other file.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

STATIC = Path(str(files("chainrule.gateway"))) / "static"
PLOTLY_JS = Path(str(files("plotly"))) / "package_data" / "plotly.min.js"

# name under /static/ -> (file, media type); the page and its script change with the
# gateway, so browsers revalidate them; plotly.js changes only with the package
ASSETS: dict[str, tuple[Path, str]] = {
    "app.js": (STATIC / "app.js", "text/javascript"),
    "style.css": (STATIC / "style.css", "text/css"),
    "xor.json": (STATIC / "xor.json", "application/json"),
    "plotly.min.js": (PLOTLY_JS, "text/javascript"),
}
REVALIDATE = {"Cache-Control": "no-cache"}
LONG_LIVED = {"Cache-Control": "public, max-age=86400"}


@router.get("/")
def dashboard() -> FileResponse:
    """The dashboard page; the job list and each job's page (``/#/jobs/<id>``) are views
    of it, switched by the script."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=REVALIDATE)


@router.get("/static/{name}")
def static_asset(name: str) -> FileResponse:
    """One of the dashboard's files; any other name is a 404."""
    if name not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no dashboard file {name!r}")
    path, media_type = ASSETS[name]
    headers = LONG_LIVED if path == PLOTLY_JS else REVALIDATE
    return FileResponse(path, media_type=media_type, headers=headers)
