"""The gateway's HTTP side (FastAPI): the API under /api/v1 and the dispatcher's page.

    app.py       create_app: the app, its one error body, units, settings, health, stream
    logins.py    who may call what (ROUTES), sessions, CSRF, tokens; login and users routes
    dispatch.py  dispatcher actions and the nearest units
    reports.py   tracks and response times
    page.py      the map page, its files and Leaflet, and its settings (map-config)
    params.py    parameters and bodies, described as exactly as they are checked
    openapi.py   the OpenAPI document's error responses
    limits.py    request body size

The core (pipeline, availability, store) stays in gateway/ and knows nothing of HTTP.
"""

from .app import create_app

__all__ = ["create_app"]
