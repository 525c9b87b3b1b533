"""Request and response bodies of dispatch's HTTP API.

The receipt callback's body ({id, reference, status, occurred_at?}) is read raw: its signature
covers the exact bytes, so providers/receipts.py verifies and then parses it."""

from typing import Literal

from pydantic import BaseModel, Field


class ReceiptResult(BaseModel):
    # delivery_state.ReceiptOutcome, less 'unknown' (answered 404 receipt.reference_unknown).
    outcome: Literal["updated", "duplicate", "stale"] = Field(
        description="updated; duplicate (already recorded); stale (contradicts a final state, "
        "or names an earlier reference of the delivery)"
    )


class DeliverySummary(BaseModel):
    incident_id: str
    notices: int = Field(description="notices received for the incident")
    awaiting_incident: int = Field(description="notices stored before their incident arrived")
    by_channel: dict[str, dict[str, int]] = Field(
        description="deliveries by channel and status, e.g. {\"email\": {\"sent\": 3}}"
    )
