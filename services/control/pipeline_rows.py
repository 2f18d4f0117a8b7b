"""Connectors and pipelines rows in Postgres: the control API's reads and writes, scoped by app.

An action that lets a pipeline run NOTIFYs the runners (shared.channels.PIPELINES_CHANNEL) at commit.
"""

import uuid
from datetime import UTC

from psycopg2.extras import Json

from shared.channels import PIPELINES_CHANNEL
from shared.schemas.pipelines import config_view, encode_token, initial_state, state_view, transition


def parse_id(raw: str) -> str | None:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


def _one(cur) -> dict | None:
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row, strict=True)) if row else None


def _inserted(cur) -> dict:
    """The row an INSERT ... RETURNING * wrote."""
    row = _one(cur)
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row


def iso_utc(ts) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- connectors ----------------------------------------------------------------------------------


def connector_view(row: dict) -> dict:
    """A connector as every read shows it: its secrets redacted."""
    return {
        "id": str(row["id"]),
        "driver": row["driver"],
        "config": config_view(row["driver"], row["config"], row["app_id"]),
        "createdAt": iso_utc(row["created_at"]),
    }


def create_connector(conn, app_id: int, driver: str, config: dict) -> dict:
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO connectors (id, app_id, driver, config) VALUES (%s, %s, %s, %s)
                       RETURNING *""",
            (str(uuid.uuid4()), app_id, driver, Json(config)),
        )
        return _inserted(cur)


def get_connector(conn, app_id: int, connector_id: str) -> dict | None:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM connectors WHERE id = %s AND app_id = %s", (connector_id, app_id))
        return _one(cur)


def delete_connector(conn, app_id: int, connector_id: str) -> str:
    """'deleted', 'missing', or 'in_use' when a pipeline still delivers to it."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM connectors WHERE id = %s AND app_id = %s FOR UPDATE", (connector_id, app_id)
        )
        if cur.fetchone() is None:
            return "missing"
        cur.execute("SELECT 1 FROM pipelines WHERE connector_id = %s LIMIT 1", (connector_id,))
        if cur.fetchone() is not None:
            return "in_use"
        cur.execute("DELETE FROM connectors WHERE id = %s", (connector_id,))
        return "deleted"


# --- pipelines -----------------------------------------------------------------------------------


def pipeline_cursor(row: dict) -> str:
    """The saved position as an opaque string; empty before anything was delivered."""
    if row["cursor_id"] is None:
        return ""
    return encode_token({"xid": str(row["cursor_xid"]), "id": row["cursor_id"]})


def pipeline_view(row: dict) -> dict:
    last_error = None
    if row["last_error"] is not None:
        last_error = {
            "message": row["last_error"],
            "at": iso_utc(row["last_error_at"]),
            "failures": row["failures"],
        }
    return {
        "id": str(row["id"]),
        "module": row["module"],
        "connectorID": str(row["connector_id"]),
        "state": state_view(row["state"], pipeline_cursor(row)),
        "createdAt": iso_utc(row["created_at"]),
        "delivered": row["delivered"],
        "lastError": last_error,
    }


class DuplicatePipeline(Exception):
    pass


def create_pipeline(conn, app_id: int, module: str, connector_id: str) -> dict | None:
    """The new pipeline in INIT; None when the connector is not the app's; DuplicatePipeline."""
    state = initial_state()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM connectors WHERE id = %s AND app_id = %s FOR SHARE", (connector_id, app_id)
        )
        if cur.fetchone() is None:
            return None
        cur.execute(
            """INSERT INTO pipelines (id, app_id, module, connector_id, state, label)
                       VALUES (%s, %s, %s, %s, %s, %s)
                       ON CONFLICT (app_id, module, connector_id) DO NOTHING RETURNING *""",
            (str(uuid.uuid4()), app_id, module, connector_id, Json(state), state["label"]),
        )
        row = _one(cur)
        if row is None:
            raise DuplicatePipeline(f"a pipeline of module {module} to connector {connector_id} exists")
        cur.execute("SELECT pg_notify(%s, %s)", (PIPELINES_CHANNEL, str(row["id"])))
        return row


def get_pipeline(conn, app_id: int, pipeline_id: str) -> dict | None:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM pipelines WHERE id = %s AND app_id = %s", (pipeline_id, app_id))
        return _one(cur)


def delete_pipeline(conn, app_id: int, pipeline_id: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM pipelines WHERE id = %s AND app_id = %s", (pipeline_id, app_id))
        return cur.rowcount == 1


def apply_action(conn, app_id: int, pipeline_id: str, action: str) -> dict | None:
    """Move the pipeline through `action`; None when missing; raises TransitionNotAllowed.

    reset empties the cursor and bumps the generation, so a batch a runner has in flight cannot
    save its (old) position over the reset.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM pipelines WHERE id = %s AND app_id = %s FOR UPDATE", (pipeline_id, app_id))
        row = _one(cur)
        if row is None:
            return None
        state = transition(row["state"], action)
        reset = action == "reset"
        cur.execute(
            """UPDATE pipelines SET state = %(state)s, label = %(label)s,
                           cursor_xid = CASE WHEN %(reset)s THEN NULL ELSE cursor_xid END,
                           cursor_id = CASE WHEN %(reset)s THEN NULL ELSE cursor_id END,
                           generation = generation + CASE WHEN %(reset)s THEN 1 ELSE 0 END,
                           failures = 0, next_attempt_at = now()
                       WHERE id = %(id)s RETURNING *""",
            {"state": Json(state), "label": state["label"], "reset": reset, "id": pipeline_id},
        )
        row = _one(cur)
        cur.execute("SELECT pg_notify(%s, %s)", (PIPELINES_CHANNEL, pipeline_id))
        return row
