"""The coordinator console: a static web page (static/, plain HTML/JS/CSS, nothing fetched from
elsewhere, so it works offline) served by intake at /console, and the pass-through by which it
reaches dedupe's and dispatch's coordinator APIs on the page's own origin (api.py). Why intake
and why a pass-through rather than CORS: docs/decisions.md."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount_console(app: FastAPI) -> None:
    """Serve the page's files. They carry no data and need no credential: the page asks for
    the coordinator token and every API call it makes is authenticated as usual."""
    app.mount("/console", StaticFiles(directory=STATIC, html=True), name="console")
