"""What the Formance endpoints (connectors, pipelines) share: who calls, errors, cursor pages."""
import psycopg2
from flask import Blueprint, current_app, jsonify, request
from psycopg2.pool import PoolError
from werkzeug.exceptions import HTTPException

from shared.errors import formance_error
from shared.schemas.formance import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, decode_token, encode_token, page
from services.control.auth import APP_HEADER, basic_app, session_app
from services.web import database_unavailable_answer


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def not_found(what: str) -> ApiError:
    # The same answer for "no such id" and "another app's id": never reveal that it exists.
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def validation(message: str) -> ApiError:
    return ApiError(400, "VALIDATION", message)


def install_errors(bp: Blueprint) -> None:
    """Every answer of these endpoints, errors included, is in the Formance Error shape."""

    @bp.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(formance_error(exc.code, exc.message)), exc.status, exc.headers

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = {400: "VALIDATION", 404: "NOT_FOUND", 409: "CONFLICT"}.get(exc.code, exc.name.upper().replace(" ", "_"))
        return jsonify(formance_error(code, exc.description)), exc.code

    @bp.errorhandler(Exception)
    def internal(exc: Exception):
        if isinstance(exc, (psycopg2.OperationalError, PoolError)):
            return database_unavailable_answer(formance_error)
        current_app.logger.exception("unexpected error")
        return jsonify(formance_error("INTERNAL", "internal error")), 500


def caller_app() -> int:
    """The app a request acts for. The one place these endpoints authenticate.

    HTTP Basic (app id, API key), as the reports take it; or a logged-in user's session key
    (cookie) naming one of its orgs' apps in the X-Sluice-App header.
    """
    app_id = basic_app() if request.authorization else session_app()
    if app_id is None:
        raise ApiError(401, "UNAUTHORIZED", "Valid HTTP Basic credentials (app id, API key), or a session "
                       f"key with the app named in {APP_HEADER}, are required.",
                       {"WWW-Authenticate": 'Basic realm="sluice"'})
    return app_id


def json_body():
    body = request.get_json(silent=True)
    if body is None:
        raise validation("body: expected a JSON object")
    return body


def db():
    return current_app.config["DB"]


def _page_request() -> tuple[int, dict | None]:
    """(page size, position) from ?pageSize= and ?cursor=; a token carries the size it was made with."""
    position = None
    token = request.args.get("cursor")
    if token:
        try:
            position = decode_token(token)
            if position.get("d") not in ("n", "p") or not isinstance(position.get("k"), int):
                raise ValueError
        except ValueError:
            raise validation("cursor: not a valid cursor") from None
    raw = request.args.get("pageSize")
    if raw is None:
        size = position.get("n", PAGE_SIZE_DEFAULT) if position else PAGE_SIZE_DEFAULT
    else:
        try:
            size = int(raw)
        except ValueError:
            raise validation("pageSize: not an integer") from None
    if not isinstance(size, int) or not 1 <= size <= PAGE_SIZE_MAX:
        raise validation(f"pageSize: must be between 1 and {PAGE_SIZE_MAX}")
    return size, position


def cursor_page(conn, table: str, app_id: int, render) -> dict:
    """One page of an app's rows of `table`, in creation order (its `seq`), as a Formance cursor.

    Positions are keys (seq), not offsets, so a page stays the same while rows are added.
    """
    size, position = _page_request()
    params = {"app": app_id, "n": size, "k": position["k"] if position else 0}
    where, order = "TRUE", "ASC"
    if position and position["d"] == "n":
        where = "seq > %(k)s"
    elif position:
        where, order = "seq < %(k)s", "DESC"
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table} WHERE app_id = %(app)s AND {where} ORDER BY seq {order} LIMIT %(n)s",
                    params)
        columns = [c.name for c in cur.description]
        rows = [dict(zip(columns, r)) for r in cur.fetchall()]
        if order == "DESC":
            rows.reverse()
        has_before = has_after = False
        if rows:
            cur.execute(f"""SELECT EXISTS (SELECT 1 FROM {table} WHERE app_id = %(app)s AND seq < %(first)s),
                                   EXISTS (SELECT 1 FROM {table} WHERE app_id = %(app)s AND seq > %(last)s)""",
                        {"app": app_id, "first": rows[0]["seq"], "last": rows[-1]["seq"]})
            has_before, has_after = cur.fetchone()
    previous = encode_token({"d": "p", "k": rows[0]["seq"], "n": size}) if has_before else ""
    next_ = encode_token({"d": "n", "k": rows[-1]["seq"], "n": size}) if has_after else ""
    return page([render(r) for r in rows], size, has_after, previous, next_)
