"""shoestring: what a side project needs from a cloud, on one cheap Linux box.

The public API. Everything else is internal and may change.
"""

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from shoestring.app import App
from shoestring.codes import InvalidCode
from shoestring.config import Settings, load_settings
from shoestring.errors import AppLoadError, ConfigError, HTTPError, ShoestringError
from shoestring.http.body import read_json
from shoestring.http.responses import JSONResponse
from shoestring.limits import RateLimited, client_network
from shoestring.services import Health, Service
from shoestring.tables import MISSING, ConditionFailed, Page, Table

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "App",
    "AppLoadError",
    "ConditionFailed",
    "ConfigError",
    "HTMLResponse",
    "HTTPError",
    "Health",
    "InvalidCode",
    "JSONResponse",
    "Page",
    "RateLimited",
    "RedirectResponse",
    "Request",
    "Response",
    "Service",
    "Settings",
    "ShoestringError",
    "Table",
    "__version__",
    "client_network",
    "load_settings",
    "read_json",
]
