"""Intake's runtime: the shared service runtime, plus the agency request limiter and
authentication that knows agency API keys as well as coordinator tokens."""

from services.common.deps import Caller
from services.common.ratelimit import KeyedRateLimiter
from services.common.runtime import ServiceRuntime
from services.common.topics import AFFECTED_RECORDS, INCIDENT_LIFECYCLE, INCIDENTS
from services.intake import auth, store
from services.intake.models import MODELS
from services.intake.settings import IntakeSettings


class IntakeRuntime(ServiceRuntime):
    settings: IntakeSettings

    def __init__(self, settings: IntakeSettings):
        super().__init__(settings, MODELS, [AFFECTED_RECORDS, INCIDENTS, INCIDENT_LIFECYCLE])
        # Feed requests per agency (a token bucket per agency in this replica).
        self.limiter = KeyedRateLimiter(settings.agency_requests_per_minute)

    async def authenticate(self, token: str) -> Caller | None:
        """A coordinator, or the agency whose live API key this is (never from the body)."""
        caller = await super().authenticate(token)
        if caller is not None:
            return caller
        presented = auth.parse_key(token)
        if presented is None:
            return None
        row = await self.db.run(store.get_api_key, presented.key_id)
        if row is None or row.revoked_at is not None or not auth.secret_matches(presented, row.secret_sha256):
            return None
        return Caller("agency", row.agency_id)
