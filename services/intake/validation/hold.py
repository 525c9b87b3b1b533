"""Holds (Privacy Act s 116): reasons not to notify yet.

Notifying someone under a hold is worse than rejecting their record, so every hold
problem is an error: the agency must fix and resend rather than have the hold dropped.
"""
from __future__ import annotations

from .context import RecordContext
from .email import normalise_email
from .mobile import normalise_mobile

HOLD_REASONS = frozenset({"health_prejudice", "representative", "other"})
_HOLD_KEYS = frozenset({"reason", "note", "representative"})
_REPRESENTATIVE_KEYS = ("name", "email", "mobile", "relationship")


def validate_hold(value: object, ctx: RecordContext) -> dict | None:
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        ctx.add("hold.malformed", "hold")
        return None
    for key in value:
        if key not in _HOLD_KEYS:
            ctx.add("field.unknown", f"hold.{str(key)[:64]}")

    reason = ctx.text(value.get("reason"), "hold.reason")
    if reason is None:
        if "hold.reason" not in ctx.errored_fields:
            ctx.add("hold.reason_missing", "hold.reason")
    else:
        reason = reason.lower().replace(" ", "_").replace("-", "_")
        if reason not in HOLD_REASONS:
            ctx.add("hold.reason_unknown", "hold.reason")
            reason = None
    note = ctx.text(value.get("note"), "hold.note")
    representative = _representative(value.get("representative"), ctx)

    rep_errored = any(f.startswith("hold.representative") for f in ctx.errored_fields)
    if reason == "representative" and not rep_errored:
        if representative is None:
            ctx.add("hold.representative_missing", "hold.representative")
        elif not (representative["email"] or representative["mobile"]):
            ctx.add("hold.representative_unreachable", "hold.representative")
    if reason is None:
        return None
    return {"reason": reason, "note": note, "representative": representative}


def _representative(value: object, ctx: RecordContext) -> dict | None:
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        ctx.add("field.wrong_type", "hold.representative")
        return None
    for key in value:
        if key not in _REPRESENTATIVE_KEYS:
            ctx.add("field.unknown", f"hold.representative.{str(key)[:64]}")
    rep = {k: ctx.text(value.get(k), f"hold.representative.{k}") for k in _REPRESENTATIVE_KEYS}
    invalid = False
    if rep["email"] is not None:
        rep["email"], code = normalise_email(rep["email"])
        invalid = invalid or code is not None
    if rep["mobile"] is not None:
        rep["mobile"], code = normalise_mobile(rep["mobile"])
        invalid = invalid or code is not None
    if invalid:
        ctx.add("hold.representative_contact_invalid", "hold.representative")
    if not any(rep.values()):
        return None
    return rep
