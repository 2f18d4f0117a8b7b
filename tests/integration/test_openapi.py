"""Both APIs publish a complete OpenAPI document, generated from their routes and the schemas."""

import pytest
from openapi_spec_validator import validate

from services import openapi
from services.control.app import create_app as create_control
from services.ingest.app import create_app as create_ingest
from services.settings import ControlSettings, IngestSettings

BARCHART = {"type": "array", "items": {"$ref": "#/components/schemas/BarchartError"}}
FORMANCE = {"$ref": "#/components/schemas/FormanceError"}
SIMPLE = {"$ref": "#/components/schemas/SimpleError"}


@pytest.fixture
def apps(stack, names, provisioned):
    return {
        "ingest": create_ingest(stack.settings(IngestSettings, **names)),
        "control": create_control(stack.settings(ControlSettings, **names)),
    }


@pytest.fixture
def documents(apps):
    return {name: app.test_client().get("/openapi.json").json for name, app in apps.items()}


@pytest.mark.parametrize("service", ["ingest", "control"])
def test_every_route_of_the_app_is_in_its_document_and_nothing_else(apps, documents, service):
    document = documents[service]
    validate(document)  # a valid OpenAPI 3.0 document
    in_document = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    in_document -= {(m, p) for m, p in in_document if m == "PARAMETERS"}
    routes = openapi.documented_routes(apps[service])
    assert routes - in_document == set(), "routes missing from the document (add @documented)"
    assert in_document - routes == set()


def error_schema(document, path, method, status):
    return document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]


def test_errors_are_documented_in_each_blueprints_own_shape(documents):
    ingest, control = documents["ingest"], documents["control"]
    assert error_schema(ingest, "/events", "post", "401") == BARCHART
    assert error_schema(ingest, "/v1/events/batch", "post", "413") == SIMPLE
    assert error_schema(control, "/reports/{source}", "get", "409") == BARCHART
    # Barchart's document has no outage error: a database outage answers in the generic shape.
    assert error_schema(control, "/reports", "post", "503") == {"oneOf": [BARCHART, SIMPLE]}
    assert error_schema(control, "/connectors/{connectorID}", "delete", "404") == FORMANCE
    assert error_schema(control, "/pipelines", "post", "409") == FORMANCE
    assert error_schema(control, "/api/connector/v1/exports/add", "post", "401") == SIMPLE
    assert error_schema(control, "/api/1/user", "get", "403") == SIMPLE
    retry = control["paths"]["/connectors"]["get"]["responses"]["429"]["headers"]["Retry-After"]
    assert retry["required"] is True


def test_every_control_route_documents_the_body_limit(documents):
    control = documents["control"]
    for path, item in control["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                assert "413" in operation["responses"], (method, path)


def test_the_documents_carry_the_contracts_credentials_and_parameters(documents):
    ingest, control = documents["ingest"], documents["control"]
    schemes = ingest["components"]["securitySchemes"]
    assert schemes["basic"] == {**schemes["basic"], "type": "http", "scheme": "basic"}
    assert schemes["moesifApplicationId"]["name"] == "X-Moesif-Application-Id"
    assert ingest["paths"]["/moesifapi/events"]["post"]["security"] == [{"moesifApplicationId": []}]
    assert control["components"]["securitySchemes"]["sessionCookie"]["name"] == "session_key"
    connectors = control["paths"]["/connectors"]["get"]
    assert {(p["in"], p["name"]) for p in connectors["parameters"]} >= {
        ("header", "X-Sluice-App"),
        ("query", "pageSize"),
        ("query", "cursor"),
    }
    assert connectors["security"] == [{"basic": []}, {"sessionCookie": []}]
    assert "AccessToken" in control["components"]["schemas"]["ExportAdd"]["required"]
    assert control["components"]["schemas"]["Filter"]["required"] == ["customer", "product"]
    action = control["paths"]["/pipelines/{pipelineID}/{action}"]["parameters"]
    assert {"in": "path", "name": "action", "required": True} | {
        "schema": {"type": "string", "enum": ["pause", "resume", "start", "stop", "reset"]}
    } in action
    # Answers are the shared schemas: EventFull, the Job, the Export, the Formance cursor page.
    events = ingest["paths"]["/events"]["post"]["responses"]["200"]["content"]["application/json"]
    assert events["schema"]["items"] == {"$ref": "#/components/schemas/EventFull"}
    for name in ("Job", "Export", "ConnectorPage", "PipelinePage", "User", "LoginAnswer"):
        assert name in control["components"]["schemas"], name


def test_every_ingest_route_documents_the_idempotency_key(documents):
    posts = [(path, item["post"]) for path, item in documents["ingest"]["paths"].items() if "post" in item]
    assert len(posts) == 5
    for path, operation in posts:
        [header] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert header["in"] == "header" and not header["required"], path
        assert "400" in operation["responses"], path
