"""Strict JSON request bodies for POST /predict, read in the HTTP process before validation.

Stricter than `json.loads` on bytes (what FastAPI uses): the body must be UTF-8 (RFC 8259; a leading BOM is
ignored), an object key may appear only once (else `{"text": "a", "texts": [...], "texts": null}` would pass as a
`text` request, last key winning), and the non-JSON literals NaN, Infinity and -Infinity are refused. Every failure,
including nesting too deep for the parser and integers over Python's digit limit, is one `MalformedJSON` with a
short reason that never repeats more than a few characters of the input.
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

SHOWN_KEY_CHARS = 40  # of a duplicated key, in the error message
NOT_AN_OBJECT = "the request body must be a JSON object (Content-Type: application/json)"  # a 422


class MalformedJSON(ValueError):
    """The body is not strict JSON; the message says why (and where, when known)."""


def shown(text: str, limit: int = SHOWN_KEY_CHARS) -> str:
    """A piece of client input that is safe to put in a message: cut to `limit` characters, lone surrogates and
    control characters escaped (a lone surrogate cannot be encoded in a UTF-8 response)."""
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return cut if cut.isprintable() else cut.encode("unicode_escape", "backslashreplace").decode("ascii")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise MalformedJSON(f"duplicate key '{shown(duplicate)}'")
    return obj


def _no_constant(name: str) -> Any:
    raise MalformedJSON(f"{name} is not a JSON value")


def parse_json(body: bytes) -> Any:
    """The value of a strict JSON document in UTF-8 (see the module docstring); `MalformedJSON` otherwise."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MalformedJSON(f"not valid UTF-8 at byte {e.start}") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except MalformedJSON:
        raise
    except json.JSONDecodeError as e:
        reason = e.msg.removesuffix(" at")  # "Invalid control character at": the position follows
        raise MalformedJSON(f"{reason} at position {e.pos}") from None
    except RecursionError:
        raise MalformedJSON("nested too deeply") from None
    except ValueError:  # int("1" * 5000): over sys.get_int_max_str_digits()
        raise MalformedJSON("a number with too many digits") from None


class StrictJSONRequest(Request):
    """A Starlette request whose `json()` is `parse_json`; a malformed body is a 400 with the reason. A body without
    a Content-Type is never read as JSON (a 422, as for any other type): FastAPI reads it only where its
    `strict_content_type` is off, which is its default in some versions and not in others."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            if not self.headers.get("content-type"):
                raise HTTPException(422, NOT_AN_OBJECT)
            try:
                self._json = parse_json(await self.body())
            except MalformedJSON as e:
                raise HTTPException(400, f"malformed JSON: {e}") from None
        return self._json


class StrictJSONRoute(APIRoute):
    """FastAPI route that parses JSON bodies with `parse_json` (FastAPI's documented custom-Request pattern)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
