"""The ops page in real headless Chromium against the real control API under gunicorn: a person
signs in through the mailed link, sees their apps' figures (matching the JSON the page polls), a
drawn chart, live refreshes, and never another organization's apps."""

import requests

from services import render_jobs, tenancy
from services.control import pipeline_rows
from tests.factories import insert_events, person
from tests.helpers import verify_link, wait_for


def seed(db, who, app_name: str) -> dict:
    """An app with stored events, a queued export, a failed report and a pipeline that waits."""
    with db.connection() as conn:
        app_id = tenancy.create_app(conn, who.org_id, app_name)
    insert_events(db, app_id)
    with db.connection() as conn:
        render_jobs.create(conn, app_id, "export", "Event")
        report = render_jobs.create(conn, app_id, "report", "Event")
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE render_jobs SET status = 'failed', completed_at = now() WHERE id = %s", (report.id,)
            )
        connector = pipeline_rows.create_connector(conn, app_id, "noop", {})
        pipeline = pipeline_rows.create_pipeline(conn, app_id, "events", str(connector["id"]))
    return {"app_id": app_id, "pipeline": str(pipeline["id"])}


def field(page, path: str) -> str:
    return page.text_content(f'[data-field="{path}"]').strip()


def test_a_person_sees_their_orgs_figures_live_and_a_drawn_chart(services, db, outbox, browser, tmp_path):
    control = services.control(SLUICE_SMTP_PORT=str(outbox.port))
    pat, rival = person(db), person(db)
    mine = seed(db, pat, "pats-shop")
    theirs = seed(db, rival, "rival-secret-app")
    insert_events(db, theirs["app_id"])

    # Not signed in: the page sends the person to sign in; the JSON is refused.
    refused = requests.get(control.url + "/ops/status.json", timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"
    page = browser.new_context(viewport={"width": 1280, "height": 1100}).new_page()
    page.goto(control.url + "/ops")
    assert page.url == control.url + "/ops/login"

    # The person signs in: types their email, opens the mailed link, types the code shown.
    page.fill("#email", pat.email)
    page.click("button[type=submit]")
    page.wait_for_selector("#manual-code:not(:empty)")
    code = page.text_content("#manual-code")
    page.goto(control.url + verify_link(outbox.mail_to(pat.email)))
    page.fill("input[name=manual_code]", code)
    page.click("button[type=submit]")
    assert "You are signed in" in page.text_content("body")
    page.goto(control.url + "/ops")
    page.wait_for_selector("body[data-refreshed]")

    # What the page shows is what the API says, for this person's apps only.
    facts = page.context.request.get(control.url + "/ops/status.json").json()
    assert {a["app_id"] for a in facts["apps"]} == {pat.app_id, mine["app_id"]}
    assert facts["stored"]["last_hour"] == 5
    assert field(page, "stored.last_hour") == "5"
    assert field(page, "render_jobs.export.queued") == "1"
    assert field(page, "render_jobs.report.failed_last_hour") == "1"
    assert field(page, "fleet.events.visible") == str(facts["fleet"]["events"]["visible"])
    assert field(page, "fleet.drain.workers") == str(facts["fleet"]["drain"]["workers"])
    pipelines = page.locator("#pipelines tr")
    assert pipelines.count() == 1 and mine["pipeline"] in pipelines.first.text_content()
    assert "INIT" in pipelines.first.text_content()
    assert "pats-shop" in page.text_content("#apps")
    shown = page.content()
    assert "rival-secret-app" not in shown and theirs["pipeline"] not in shown
    assert f"app {theirs['app_id']}" not in shown and f"app {rival.app_id}," not in shown

    # The chart: 60 minutes, the 5 events in the latest (or, past a minute's turn, the one before),
    # and ink on the canvas.
    series = page.evaluate("window.opsChart.data[1]")
    assert page.evaluate("window.opsChart.data[0].length") == 60
    assert series == [m["stored"] for m in facts["stored"]["per_minute"]]
    assert sum(series[-2:]) == 5
    inked = page.evaluate(
        """() => {
            const canvas = document.querySelector('#chart canvas');
            const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
            return inked;
        }"""
    )
    assert inked > 1000
    page.screenshot(path=str(tmp_path / "ops.png"), full_page=True)

    # Refreshed live: events stored now appear without reloading the page.
    insert_events(db, mine["app_id"])
    wait_for(lambda: field(page, "stored.last_hour") == "10", 30, "the page to show the new events")
    assert sum(page.evaluate("window.opsChart.data[1].slice(-2)")) == 10
    assert "rival-secret-app" not in page.content()
