"""Resolving a control API caller to an app: every wire form maps onto the same API keys."""
from flask import current_app, request

from services.tenancy import app_for_key


def app_for_token(key: str | None) -> int | None:
    """The app of a live API key (Mews AccessToken, the password of HTTP Basic), else None.

    Keys are looked up by their sha256, so comparing never leaks the secret through timing.
    """
    if not key:
        return None
    with current_app.config["DB"].connection() as conn:
        return app_for_key(conn, key)


def basic_app() -> int | None:
    """HTTP Basic with the app id as user name and one of its keys as password, else None."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        return None
    app_id = app_for_token(auth.password)
    return app_id if app_id is not None and str(app_id) == auth.username else None
