"""Formance cursor pages (reference 004) over an app's rows, keyed on their creation order."""

from flask import request

from services.api_errors import ApiError
from shared.schemas.pipelines import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, decode_token, encode_token, page
from shared.storage_limits import BIGINT_MAX


def _invalid(message: str) -> ApiError:
    return ApiError(400, "VALIDATION", message)


def _page_request() -> tuple[int, dict | None]:
    """(page size, position) from ?pageSize= and ?cursor=; a token carries the size it was made with."""
    position = None
    token = request.args.get("cursor")
    if token:
        try:
            position = decode_token(token)
            if position.get("d") not in ("n", "p") or not _whole(position.get("k"), 0, BIGINT_MAX):
                raise ValueError
        except ValueError:
            raise _invalid("cursor: not a valid cursor") from None
    raw = request.args.get("pageSize")
    if raw is None:
        size = position.get("n", PAGE_SIZE_DEFAULT) if position else PAGE_SIZE_DEFAULT
    else:
        try:
            size = int(raw)
        except ValueError:
            raise _invalid("pageSize: not an integer") from None
    if not _whole(size, 1, PAGE_SIZE_MAX):
        raise _invalid(f"pageSize: must be between 1 and {PAGE_SIZE_MAX}")
    return size, position


def _whole(value, low: int, high: int) -> bool:
    """An int (not a bool: JSON true is no position) within [low, high]."""
    return type(value) is int and low <= value <= high


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
        cur.execute(
            f"SELECT * FROM {table} WHERE app_id = %(app)s AND {where} ORDER BY seq {order} LIMIT %(n)s",
            params,
        )
        columns = [c.name for c in cur.description]
        rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
        if order == "DESC":
            rows.reverse()
        has_before = has_after = False
        if rows:
            cur.execute(
                f"""SELECT EXISTS (SELECT 1 FROM {table} WHERE app_id = %(app)s AND seq < %(first)s),
                           EXISTS (SELECT 1 FROM {table} WHERE app_id = %(app)s AND seq > %(last)s)""",
                {"app": app_id, "first": rows[0]["seq"], "last": rows[-1]["seq"]},
            )
            has_before, has_after = cur.fetchone()
    previous = encode_token({"d": "p", "k": rows[0]["seq"], "n": size}) if has_before else ""
    next_ = encode_token({"d": "n", "k": rows[-1]["seq"], "n": size}) if has_after else ""
    return page([render(r) for r in rows], size, has_after, previous, next_)
