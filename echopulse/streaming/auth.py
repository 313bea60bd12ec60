"""Bearer-token auth: an `Authorization: Bearer …` header, or, for browsers (which cannot set headers on a
websocket), a `token.<TOKEN>` websocket subprotocol or a `token` query parameter. Compared in constant time;
the token is never logged (uvicorn's access log shows paths, so prefer the header or the subprotocol)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

SUBPROTOCOL_PREFIX = "token."


def token_matches(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def websocket_token_ok(
    expected: str | None, header: str | None, protocols: list[str], query: str | None
) -> bool:
    """Whether a websocket handshake carries the token in any of the three places a client may put it."""
    if expected is None:
        return True
    offered = [bearer(header), query] + [p[len(SUBPROTOCOL_PREFIX):] for p in protocols
                                         if p.startswith(SUBPROTOCOL_PREFIX)]
    return any(token_matches(expected, t) for t in offered if t is not None)


class TokenCheck:
    """A FastAPI dependency: 401 with a problem body unless the request carries the token."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    async def __call__(self, request: Request) -> None:
        if self.token is None:
            return
        given = bearer(request.headers.get("authorization")) or request.query_params.get("token")
        if not token_matches(self.token, given):
            raise HTTPException(
                status_code=401, detail={"code": "unauthorized", "message": "missing or wrong bearer token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
