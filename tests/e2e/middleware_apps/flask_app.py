"""A Flask app wrapped in Moesif's WSGI middleware as its README shows, pointed at Sluice: BASE_URI
and a Sluice key, and a short batch timeout so the test need not wait. Its log goes to stderr."""

import logging
import os

from flask import Flask, jsonify, request
from moesifwsgi import MoesifMiddleware
from werkzeug.serving import make_server

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

app = Flask(__name__)


@app.get("/items/<int:item>")
def get_item(item):
    return jsonify(id=item)


@app.post("/items")
def create_item():
    return jsonify(id=2, **request.get_json()), 201


@app.put("/items/<int:item>")
def replace_item(item):
    return jsonify(error=f"no item {item}"), 404


@app.delete("/items/<int:item>")
def delete_item(item):
    return jsonify(error="boom"), 500


app.wsgi_app = MoesifMiddleware(
    app.wsgi_app,
    {
        "APPLICATION_ID": os.environ["MOESIF_APPLICATION_ID"],
        "BASE_URI": os.environ["MOESIF_BASE_URI"],
        "BATCH_SIZE": 100,
        "EVENT_BATCH_TIMEOUT": 0.5,
    },
)

server = make_server("127.0.0.1", int(os.environ["PORT"]), app, threaded=True)
print("listening", flush=True)
server.serve_forever()
