"""The ceiling of this stack: a bare Flask app with one route returning small JSON."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    """Return a small JSON document."""
    return {"status": "ok"}
