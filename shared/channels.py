"""The names by which the services reach each other, spelled once.

The control API sends Celery tasks by name (it never imports the worker's task code), and
Postgres NOTIFY wakes the worker's pipeline runners; both sides import these names from here.
"""

# Celery task names (the broker is Redis; see services/worker/celery_app.py).
RENDER_TASK = "sluice.render_job"  # render the next job in fair order (it names no job)
SWEEP_TASK = "sluice.sweep_render_jobs"
# Render tasks have a Celery queue of their own, so nothing else waits behind a backlog of renders
# (and operators can give renders workers of their own: `celery ... worker -Q sluice.render`).
RENDER_QUEUE = "sluice.render"

# Postgres NOTIFY channels the pipeline runners LISTEN on.
# Rows committed to events or api_calls (raised by the trigger in migration 0006).
STORED_CHANNEL = "sluice_stored"
# A pipeline was created, or an action let it run (raised by the control API).
PIPELINES_CHANNEL = "sluice_pipelines"
