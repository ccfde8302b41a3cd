"""Blueprint "docs": Swagger UI at /docs, served by authsvc itself.

Swagger UI's files come from the flask-swagger-ui package (its `dist`
folder), so the page works with no internet and its Content-Security-Policy
names no CDN. The page has no inline script: docs.js starts Swagger UI.
"""

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, render_template, send_from_directory

SWAGGER_UI_FILES = Path(flask_swagger_ui.__file__).parent / "dist"
OWN_FILES = Path(__file__).parent / "static"

# Swagger UI styles its widgets with CSSOM (element.style), which a CSP does
# not govern, so neither scripts nor styles need 'unsafe-inline'. data:
# images are the icons inside swagger-ui.css.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

bp = Blueprint("docs", __name__, url_prefix="/docs")


@bp.get("")
def page():
    """Serve the Swagger UI page of /openapi.json."""
    return render_template("docs.html")


@bp.get("/static/swagger-ui/<path:filename>")
def swagger_ui(filename):
    """Serve one of Swagger UI's own files."""
    return send_from_directory(SWAGGER_UI_FILES, filename)


@bp.get("/static/docs.js")
def initialiser():
    """Serve the script that starts Swagger UI."""
    return send_from_directory(OWN_FILES, "docs.js")
