"""The UI: Dagster's own webserver with one more route, ``/kumo/pictures/<path>``, for the assets' pictures.

Assets store their pictures on the data plane (`kumo_assets.ui_pictures`) and link them from short
markdown metadata, which Dagster renders inline. This module runs ``dagster-webserver``'s own command line
(every option of it works) with that route added; the data plane comes from the same environment as the
assets' (``KUMO_DATA_PLANE``, ``AWS_ENDPOINT_URL``), so a local folder and ``s3://`` both serve.

    python -m kumo_assets.webserver -w workspace.yaml -h 127.0.0.1 -p 3000
"""

from __future__ import annotations

import re
import sys

import dagster_webserver.app
from dagster_webserver.webserver import DagsterWebserver
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kumo_assets.ui_pictures import PICTURES_ROUTE
from stores.data_plane import DataPlane
from stores.environment import data_plane_root, object_store_from_environment

__all__ = ["PicturesWebserver", "main", "read_picture"]

_PART = re.compile(r"^[A-Za-z0-9_.=-]+$")


def read_picture(data_plane: DataPlane, path: str) -> bytes | None:
    """The PNG at ``<graph>/pictures/.../<name>.png`` on the data plane; None for any other or a missing path."""
    parts = path.split("/")
    if len(parts) < 3 or parts[1] != "pictures" or not parts[-1].endswith(".png"):
        return None
    if not all(_PART.match(part) and part not in {".", ".."} for part in parts):
        return None
    try:
        return data_plane.get_bytes(*parts)
    except FileNotFoundError:
        return None


class PicturesWebserver(DagsterWebserver):
    """`DagsterWebserver` that also serves the pictures assets stored on the data plane."""

    def build_routes(self):
        return [Route(PICTURES_ROUTE + "/{path:path}", self.picture_endpoint), *super().build_routes()]

    async def picture_endpoint(self, request: Request) -> Response:
        data_plane = DataPlane(root=data_plane_root(), object_store=object_store_from_environment())
        png = read_picture(data_plane, request.path_params["path"])
        if png is None:
            return PlainTextResponse("no such picture", status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def main() -> None:
    """``dagster-webserver``'s command line, serving `PicturesWebserver`."""
    dagster_webserver.app.DagsterWebserver = PicturesWebserver  # the class its app factory instantiates
    from dagster_webserver.cli import main as webserver_main

    sys.argv[0] = "kumo-ui"
    webserver_main()


if __name__ == "__main__":
    main()
