"""Agency API keys: `pk_<key id>.<secret>`. The key id finds the row; only the secret's
SHA-256 is stored (the secret is 32 random bytes, so a plain hash is enough)."""

import hmac
import secrets

from fastapi import Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.common.auth import bearer_token, sha256_hex
from services.common.clock import utcnow
from services.common.db import run_db
from services.common.errors import ApiError
from services.intake.models import ApiKey

_PREFIX = "pk_"


def issue_key(session: Session, agency_id: str) -> tuple[ApiKey, str]:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(key_id=key_id, agency_id=agency_id, secret_sha256=sha256_hex(secret))
    session.add(row)
    return row, f"{_PREFIX}{key_id}.{secret}"


def revoke_key(session: Session, agency_id: str, key_id: str) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.agency_id != agency_id:
        return False
    row.revoked_at = row.revoked_at or utcnow()
    session.add(row)
    return True


def _agency_for_key(engine: Engine, token: str) -> str | None:
    if not token.startswith(_PREFIX) or "." not in token:
        return None
    key_id, _, secret = token[len(_PREFIX):].partition(".")
    with Session(engine) as session:
        row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_sha256, sha256_hex(secret)):
        return None
    return row.agency_id


async def current_agency(request: Request) -> str:
    """FastAPI dependency: the agency id behind the caller's API key (never from the body)."""
    token = bearer_token(request)
    agency_id = await run_db(_agency_for_key, request.app.state.runtime.engine, token)
    if agency_id is None:
        raise ApiError(401, "auth.invalid", "The API key is not valid or has been revoked.",
                       headers={"WWW-Authenticate": "Bearer"})
    return agency_id
