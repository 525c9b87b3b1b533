"""The postal channel's units of work: put waiting letters in a batch for the print house,
render the batch's pack (one PDF + manifest CSV), mark it posted, record returned mail.

Each `session`-first function runs in ONE transaction (`await ctx.db.run(fn, ...)`); rendering
(`render_pack`) runs outside it, on the opened notices. A returned letter is a permanent
failure of the postal delivery, so the notice falls back like any other channel's bounce: with
no channel left it becomes 'unreachable' and the person is on the s 115 public-notice list.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session

from services.common.crypto import Sealer
from services.common.messages import DeliveryStatus, decode_notice, notice_sealing_context
from services.common.references import normalise_reference
from services.dispatch import tracking
from services.dispatch.content.models import Notice, ToldBefore
from services.dispatch.content.render import RenderError
from services.dispatch.incidents import IncidentBook
from services.dispatch.letters import layout
from services.dispatch.letters.pack import Pack, PackedLetter, build_pack
from services.dispatch.policy import NZ, QuietHours
from services.dispatch.store import lookups, mailouts, notices
from services.dispatch.store.deliveries import Change
from services.dispatch.store.mailouts import Batch, BatchLetter

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # a pack is rendered on each download: keep it a few minutes of CPU


def new_batch_id(now: datetime) -> str:
    return f"mob-{now:%Y%m%d}-{secrets.token_hex(4)}"


def letter_date(now: datetime) -> date:
    """The date printed on the letters: New Zealand's, not UTC's."""
    return now.astimezone(NZ).date()


def create_batch(session: Session, incident_id: str, limit: int, large_print: bool,
                 now: datetime) -> Batch | None:
    # A sent-in-error correction letter with nothing to correct is never batched.
    tracking.drop_unneeded_corrections(session, now, ["postal"])
    return mailouts.create_batch(session, new_batch_id(now), incident_id, min(limit, MAX_BATCH),
                                 large_print, letter_date(now), now)


@dataclass(frozen=True)
class PackInput:
    batch: Batch
    # (notice_id, notice payload, IncidentContent, says_update pinned, ToldBefore or None)
    letters: list[tuple[str, bytes, object, bool | None, ToldBefore | None]]


def load_pack(session: Session, book: IncidentBook, batch_id: str) -> PackInput | None:
    """What rendering the batch needs, read in one transaction: each letter's notice (sealed)
    and the incident content at the revision pinned when the letter was batched."""
    batch = mailouts.get_batch(session, batch_id)
    if batch is None:
        return None
    letters = []
    for letter in mailouts.batch_letters(session, batch_id):
        entry = book.revision(session, batch.incident_id, letter.content_revision)
        if entry is None:  # the incident is known before any delivery is planned
            raise RenderError("incident content missing for a batched letter")
        letters.append((letter.notice_id, letter.notice_payload, entry.content,
                        letter.says_update, _told_before(session, batch.incident_id, letter)))
    return PackInput(batch, letters)


def _told_before(session: Session, incident_id: str, letter: BatchLetter) -> ToldBefore | None:
    """A correction letter names the notice it corrects (how and when it went, its reference)."""
    if letter.notice_version < 2 or decode_notice(letter.notice_payload).correction is None:
        return None
    earlier = lookups.told_before(session, incident_id, letter.person_id, letter.notice_version)
    return ToldBefore.of(earlier.notice_id, earlier.reference_code, earlier.channel,
                         earlier.first_attempt_at) if earlier else None


def render_pack(sealer: Sealer, data: PackInput) -> Pack:
    """The batch's PDF and manifest. CPU-bound: call it off the event loop."""

    def letters():  # noqa: ANN202 - a generator of PackedLetter
        for notice_id, payload, content, says_update, told_before in data.letters:
            message = decode_notice(payload)
            sealed = sealer.open(message.sealed, notice_sealing_context(notice_id))
            notice = Notice.from_contract(message, sealed, updates_earlier=says_update,
                                          told_before=told_before)
            letter = layout.render_letter_pdf(notice, content, large_print=data.batch.large_print,
                                              letter_date=data.batch.letter_date)
            address = notice.addressee_address
            yield PackedLetter(notice_id, letter, notice.addressee_name,
                               address.lines() if address else [])

    return build_pack(letters())


def mark_posted(session: Session, batch_id: str, now: datetime) -> Batch | None:
    return mailouts.mark_posted(session, batch_id, now)


class ReturnOutcome:
    RECORDED = "recorded"
    ALREADY = "already-recorded"
    NOT_POSTED = "not-posted"  # no posted letter has that reference
    UNKNOWN = "unknown"


def record_returned(session: Session, book: IncidentBook, incident_id: str, reference: str,
                    quiet: QuietHours | None, now: datetime) -> str:
    """A letter came back undelivered. `reference` is the code printed on it (PAN-XXXX-XXXX)
    or its notice id (from the manifest)."""
    code = normalise_reference(reference)
    printed = notices.by_reference(session, code) if code else None
    match = None
    for delivery_id, notice_id in mailouts.incident_letters(session, incident_id):
        if notice_id == reference.strip() or (printed is not None and printed.notice_id == notice_id):
            match = delivery_id
            break
    if match is None:
        return ReturnOutcome.UNKNOWN
    row = mailouts.lock_letter(session, match)
    if row is None:
        return ReturnOutcome.UNKNOWN
    if row.status == DeliveryStatus.PERMANENT_FAILURE:
        return ReturnOutcome.ALREADY
    if row.status != DeliveryStatus.SENT:
        return ReturnOutcome.NOT_POSTED
    change = Change(row, DeliveryStatus.PERMANENT_FAILURE.value, mailouts.PROVIDER,
                    "mail-returned")
    tracking.record_changes(session, book, [change], quiet, now)
    return ReturnOutcome.RECORDED
