"""The floor for bench/ingest.py: a Flask app that only parses the posted JSON and answers."""

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask("bench.bare")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.post("/events")
    def events():
        body = request.get_json()
        return jsonify(accepted=len(body))

    return app
