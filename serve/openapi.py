"""/openapi.json: what each route accepts and answers, exactly, for this server's models, limits and key.

FastAPI documents the /predict request from its pydantic model; the rest is written here: every answer a route
can give (with its body: `{"detail": ...}` on the native routes, `{"error": ...}` on the LibreTranslate ones), the
X-API-Key header only when the server has a key, and the LibreTranslate routes' parameters (JSON body, form body or
query string). tests/test_openapi.py holds the server to it with schemathesis.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from serve.files import MEDIA_TYPES, supported_formats
from serve.libretranslate import FORMATS
from serve.middleware import SENTENCE_COUNT_HEADER
from serve.quota import QuotaStore
from serve.schema import BatchTranslationResponse, TranslationResponse
from serve.service import Service

REF = "#/components/schemas/{model}"


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


def _components(service: Service) -> dict[str, Any]:
    limits = service.limits
    languages = service.languages
    texts = {
        "oneOf": [
            {"type": "string", "minLength": 1, "maxLength": limits.max_chars},
            {
                "type": "array",
                "items": {"type": "string", "maxLength": limits.max_chars},
                "minItems": 1,
                "maxItems": limits.max_texts,
            },
        ],
        "description": f"a text or 1 to {limits.max_texts} texts, each a document of at most {limits.max_chars} "
        "characters (plain text or an HTML fragment)",
    }
    key = {"type": "string", "description": "the server's API key (when it has one)"}
    detection = {
        "type": "object",
        "properties": {
            "confidence": {"type": "number", "minimum": 0, "maximum": 100},
            "language": {"type": "string", "enum": languages},
        },
        "required": ["confidence", "language"],
    }
    return {
        "Error": {
            "type": "object",
            "properties": {"detail": {"type": "string", "description": "what is wrong"}},
            "required": ["detail"],
        },
        "LTError": {
            "type": "object",
            "properties": {"error": {"type": "string", "description": "what is wrong"}},
            "required": ["error"],
        },
        "LTTranslateRequest": {
            "type": "object",
            "properties": {
                "q": texts,
                "source": {"type": "string", "enum": ["auto", *languages], "description": "a code, or auto"},
                "target": {"type": "string", "enum": languages},
                "format": {"type": "string", "enum": list(FORMATS), "default": "text"},
                "alternatives": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": limits.max_beam_size - 1,
                    "default": 0,
                    "description": "alternative translations per text (plain text only)",
                },
                "api_key": key,
            },
            "required": ["q", "source", "target"],
            "additionalProperties": True,
            "anyOf": _pairs(service),
        },
        "LTTranslateForm": {
            "type": "object",
            "properties": {
                "q": {"type": "string", "minLength": 1, "maxLength": limits.max_chars},
                "source": {"type": "string", "enum": ["auto", *languages]},
                "target": {"type": "string", "enum": languages},
                "format": {"type": "string", "enum": list(FORMATS)},
                "alternatives": {"type": "string", "pattern": "^[0-9]$", "description": "a number"},
                "api_key": key,
            },
            "required": ["q", "source", "target"],
            "additionalProperties": True,
            "anyOf": _pairs(service),
        },
        "LTDetectForm": {
            "type": "object",
            "properties": {"q": {"type": "string", "minLength": 1, "maxLength": limits.max_chars}, "api_key": key},
            "required": ["q"],
            "additionalProperties": True,
        },
        "LTTranslateResponse": {
            "type": "object",
            "properties": {
                "translatedText": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                "detectedLanguage": {
                    "anyOf": [detection, {"type": "array", "items": detection}],
                    "description": "with source auto only",
                },
                "alternatives": {
                    "anyOf": [  # [] is both
                        {"type": "array", "items": {"type": "string"}},
                        {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                    ],
                    "description": "with alternatives > 0 only",
                },
            },
            "required": ["translatedText"],
        },
        "LTDetectRequest": {
            "type": "object",
            "properties": {"q": texts, "api_key": key},
            "required": ["q"],
            "additionalProperties": True,
        },
        "LTDetections": {"type": "array", "items": detection, "minItems": 1},
        "LTSuggestRequest": {
            "type": "object",
            "properties": {
                "q": {"type": "string", "minLength": 1, "maxLength": limits.max_chars, "description": "original"},
                "s": {"type": "string", "minLength": 1, "maxLength": limits.max_chars, "description": "suggestion"},
                "source": {"type": "string", "enum": languages},
                "target": {"type": "string", "enum": languages},
                "api_key": key,
            },
            "required": ["q", "s", "source", "target"],
            "additionalProperties": True,
        },
        "LTSuggestResponse": {
            "type": "object",
            "properties": {"success": {"type": "boolean", "enum": [True]}},
            "required": ["success"],
        },
        "LTTranslateFileForm": {
            "type": "object",
            "properties": {
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": f"the file, named with its extension: {', '.join(supported_formats())}",
                },
                "source": {"type": "string", "enum": ["auto", *languages], "description": "a code, or auto"},
                "target": {"type": "string", "enum": languages},
                "api_key": key,
            },
            "required": ["file", "source", "target"],
            "additionalProperties": True,
        },
        "LTTranslateFileResponse": {
            "type": "object",
            "properties": {"translatedFileUrl": {"type": "string", "description": "where to GET the translated file"}},
            "required": ["translatedFileUrl"],
        },
        "LTFrontendSettings": {
            "type": "object",
            "properties": {
                "charLimit": {"type": "integer"},
                "frontendTimeout": {"type": "integer"},
                "apiKeys": {"type": "boolean"},
                "keyRequired": {"type": "boolean"},
                "suggestions": {"type": "boolean"},
                "filesTranslation": {"type": "boolean"},
                "supportedFilesFormat": {"type": "array", "items": {"type": "string"}},
                "language": {"type": "object"},
            },
            "required": ["charLimit", "apiKeys", "keyRequired", "suggestions", "supportedFilesFormat", "language"],
        },
        "LTLanguages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "name": {"type": "string"},
                    "targets": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["code", "name", "targets"],
            },
        },
        "Index": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "pairs": {"type": "array", "items": {"type": "string"}},
                "docs": {"type": "string"},
            },
            "required": ["name", "version", "pairs", "docs"],
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": ["ok"]}, "pairs": {"type": "array"}},
            "required": ["status", "pairs"],
        },
        "Info": {
            "type": "object",
            "properties": {
                "models": {"type": "array", "items": {"type": "object"}, "minItems": 1},
                "pairs": {
                    "type": "object",
                    "description": "pairs with their own model, and pairs /translate translates through English",
                    "properties": {
                        "direct": {"type": "array", "items": {"type": "string"}},
                        "pivot": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["direct", "pivot"],
                },
                "limits": {"type": "object"},
            },
            "required": ["models", "pairs", "limits"],
        },
    }


def _pairs(service: Service) -> list[dict[str, Any]]:
    """The served pairs as (source, target) alternatives, each language to itself included: a code or auto, then
    a target of that code."""
    return [
        {"properties": {"source": {"enum": [code, "auto"]}, "target": {"enum": service.targets(code)}}}
        for code in service.languages
    ]


def _lt_body(schema: str, form: str) -> dict[str, Any]:
    """A LibreTranslate route's parameters: a JSON body, or a form body (one text), or the query string."""
    return {
        "required": False,
        "content": {
            "application/json": {"schema": _ref(schema)},
            "application/x-www-form-urlencoded": {"schema": _ref(form)},
            "multipart/form-data": {"schema": _ref(form)},
        },
        "description": "the parameters as JSON, or as a form (each a string); the query string may carry them too",
    }


def _lt_query(names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names]


def _patch(schema: dict[str, Any], service: Service, open_paths: frozenset[str]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for model in (TranslationResponse, BatchTranslationResponse):
        found = model.model_json_schema(ref_template=REF)
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    components.update(_components(service))
    request = components["TranslationRequest"]
    props, limits = request["properties"], service.limits
    text = {"type": "string", "maxLength": limits.max_chars, "pattern": "\\S"}
    props["text"]["anyOf"][0] = text
    props["texts"]["anyOf"][0].update(items=text, maxItems=limits.max_texts)
    props["beam_size"]["anyOf"][0]["maximum"] = limits.max_beam_size
    served = {
        "source": service.languages,
        "target": service.languages,
        "model": sorted({m.name for m in service.models.values()} | set(service.models)),
    }
    for name, values in served.items():
        props[name]["anyOf"][0] = {"type": "string", "enum": values}
    request["oneOf"] = [  # exactly one of text (a string) or texts (a list); the other may be null or absent
        {"properties": {"text": {"type": "string"}}, "required": ["text"]},
        {"properties": {"texts": {"type": "array"}}, "required": ["texts"]},
    ]
    keyed = service.keys is not None
    quotas = isinstance(service.keys, QuotaStore)  # nmt serve --keys: per-key limits (serve.quota)
    if keyed:
        schema["components"]["securitySchemes"] = {
            "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        }
    error, lt_error = _ref("Error"), _ref("LTError")
    too_large = "request body over the size limit (--max-body-bytes)"
    late = "no answer within the time limit (--timeout): queue wait and translation"
    over = {
        "description": "over the key's requests per minute or characters per day; Retry-After says when to retry",
        "headers": {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
    }
    native = {
        ("/", "get"): {
            "200": {
                "description": "the service; a browser (Accept: text/html) gets the translation web page instead",
                "content": {**_json(_ref("Index")), "text/html": {"schema": {"type": "string"}}},
            }
        },
        ("/metrics", "get"): {
            "200": {
                "description": "Prometheus metrics of every process of the server (text exposition format)",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        ("/health", "get"): {
            "200": _answer("every worker has loaded every model", _ref("Health")),
            "503": _answer("the models are still loading", error),
        },
        ("/info", "get"): {"200": _answer("the served models, limits and runtime", _ref("Info"))},
        ("/predict", "post"): {
            "200": {
                "description": "the translations (text: one; texts: in order)",
                "content": _json({"oneOf": [_ref("TranslationResponse"), _ref("BatchTranslationResponse")]}),
                "headers": {SENTENCE_COUNT_HEADER: {"schema": {"type": "string"}, "description": "sentences searched"}},
            },
            "400": _answer("malformed JSON, or no served model fits source/target/model", error),
            "422": _answer(
                "invalid request: wrong types, unknown field, missing or both of text/texts, empty or too long "
                "text, too many texts, beam_size, n_best or max_length out of range",
                error,
            ),
            "504": _answer(late, error),
        },
    }
    for (path, method), responses in native.items():
        operation = schema["paths"][path][method]
        responses["413"] = _answer(
            too_large + (", or a request over the key's characters per day" if quotas else ""), error
        )
        if keyed and path not in open_paths:
            responses["401"] = _answer("missing X-API-Key" if quotas else "missing or wrong X-API-Key", error)
            if quotas:
                responses["403"] = _answer("unknown X-API-Key", error)
                if method == "post":
                    responses["429"] = {**over, "content": _json(error)}
            operation["security"] = [{"APIKeyHeader": []}]
        operation["responses"] = responses
    bad = "invalid request (LibreTranslate's message), a language or pair not served"
    if keyed:
        bad += ", or no api_key"
    lt = {
        ("/translate", "post"): (
            {"200": _answer("the translation(s)", _ref("LTTranslateResponse")), "504": _answer(late, lt_error)},
            ("LTTranslateRequest", "LTTranslateForm"),
            ["q", "source", "target", "format", "alternatives", "api_key"],
        ),
        ("/detect", "post"): (
            {"200": _answer("the likeliest served languages, best first", _ref("LTDetections"))},
            ("LTDetectRequest", "LTDetectForm"),
            ["q", "api_key"],
        ),
        ("/languages", "get"): ({"200": _answer("every served language", _ref("LTLanguages"))}, None, []),
        ("/frontend/settings", "get"): (
            {"200": _answer("the settings a LibreTranslate front end reads", _ref("LTFrontendSettings"))},
            None,
            [],
        ),
        ("/suggest", "post"): (
            {
                "200": _answer("stored (nmt serve --suggestions)", _ref("LTSuggestResponse")),
                "403": _answer(
                    "suggestions are off on this server" + (", or a wrong api_key" if keyed else ""), lt_error
                ),
            },
            ("LTSuggestRequest", "LTSuggestRequest"),
            ["q", "s", "source", "target", "api_key"],
        ),
    }
    lt[("/translate_file", "post")] = (
        {
            "200": _answer("the translated file's address (GET it within --file-ttl seconds)",
                           _ref("LTTranslateFileResponse")),
            "400": _answer(bad + "; a file format not supported, a file that is not its format (or a hostile one: "
                           "zip bomb, XML entities), an empty file, more characters than --max-chars", lt_error),
            "403": _answer("file translation is off" + (", or a wrong api_key" if keyed else ""), lt_error),
            "504": _answer(late, lt_error),
        },
        {
            "required": True,
            "content": {"multipart/form-data": {"schema": _ref("LTTranslateFileForm")}},
            "description": "a form with the file; the query string may carry the other parameters",
        },
        ["source", "target", "api_key"],
    )  # fmt: skip
    for (path, method), (responses, body, query) in lt.items():
        operation = schema["paths"][path][method]
        responses["413"] = _answer(too_large, lt_error)
        if body is not None:
            responses.setdefault("400", _answer(bad, lt_error))
            if keyed:
                responses.setdefault("403", _answer("wrong api_key", lt_error))
            if quotas:
                responses["429"] = {**over, "content": _json(lt_error)}
            operation["requestBody"] = body if isinstance(body, dict) else _lt_body(*body)
            operation["parameters"] = _lt_query(query)
        operation["responses"] = responses
    schema["paths"]["/translate_file"]["post"]["responses"]["413"] = _answer(
        "a file over --max-file-bytes, or a request body over the size limit", lt_error
    )
    download = schema["paths"]["/download_file/{name}"]["get"]
    download["responses"] = {
        "200": {
            "description": "the translated file, as an attachment named as the uploaded one",
            "content": {media.split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
                        for media in dict.fromkeys(MEDIA_TYPES.values())},
        },
        "403": _answer("file translation is off", lt_error),
        "404": _answer("no such translated file, or it has expired (--file-ttl)", lt_error),
        "413": _answer(too_large, lt_error),
    }  # fmt: skip


def document_api(app: FastAPI, version: str, service: Service, open_paths: frozenset[str] = frozenset()) -> None:
    """Title, version and the complete contract in /openapi.json (built on first request, then cached);
    `open_paths` need no key even when the server has one (/metrics with --metrics-open)."""
    app.title, app.version = "nmt translation service", version
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            _patch(build(), service, open_paths)  # build() caches the schema in app.openapi_schema, patched in place
        return app.openapi_schema

    app.openapi = openapi
