""""Is this notice genuine?": a person types the reference from their notice and their date of
birth; a match confirms the notice and shows what it said, nothing else.

No enumeration. A wrong date of birth and an unknown reference get the same answer (body and
status) and the same work: one indexed look-up of the reference (a malformed one is looked up
as a code no notice has), one keyed digest of the date (under the notice's data key, or a decoy
key when there is no notice or its key is gone), a constant-time comparison with every one of
MAX_DOB_CHECKS slots (padded with decoys), and one audit entry. Only a match does more (loading
what the notice said). The date of birth is never stored, logged or audited: the notice carries
keyed digests of the person's dates of birth (services/common/references.py).

The unit of work takes a Session (like tracking.py); the rules (`digests_match`, `answer_of`)
are plain functions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from sqlmodel import Session

from services.common import audit, shared_buckets
from services.common.audit import Act
from services.common.crypto import SealError, Vault
from services.common.messages import IncidentMessage, NoticeMessage, decode_notice
from services.common.ratelimit import KeyedRateLimiter, TokenBucket
from services.common.references import DOB_LABEL, MAX_DOB_CHECKS, dob_text, normalise_reference
from services.common.shared_buckets import Limit
from services.dispatch.content.render import DATA_CATEGORY_LABELS_EN
from services.dispatch.store import incidents, notices

ACTION = "notice.check"
CHECK_CLIENT_LABEL = "check-client"  # the digest of a client address keying its shared bucket
EVERYONE = "everyone"  # the key of the shared global bucket
# Looked up when what was typed is no reference at all: the same query as a real look-up.
_NO_SUCH_CODE = "PAN-0000-0000-0000"
# A decoy key per process: the digest made when there is no notice costs what a real one does.
_DECOY_KEY = secrets.token_bytes(32)
_DECOY_SLOTS = tuple(secrets.token_hex(32) for _ in range(MAX_DOB_CHECKS))


@dataclass(frozen=True, slots=True)
class Confirmed:
    """What the notice said, and only that: no contact details, nothing about anyone else."""

    incident_title: str
    sender_name: str
    breach_description: str
    agencies: list[dict]  # {name, data_categories}
    contact: dict  # {organisation, phone, web_address, hours}
    version: int


def digests_match(digest: str, stored: list[str]) -> bool:
    """Whether `digest` is one of `stored`, comparing with every one of MAX_DOB_CHECKS slots in
    constant time whatever matches (no early exit, the same number of comparisons)."""
    slots = list(stored[:MAX_DOB_CHECKS]) + list(_DECOY_SLOTS[len(stored):])
    found = False
    for slot in slots:
        found |= hmac.compare_digest(digest.encode(), slot.encode())
    return found


def _decoy_digest(text: str) -> str:
    sub = hmac.new(_DECOY_KEY, f"panui-digest|{DOB_LABEL}".encode(), hashlib.sha256).digest()
    return hmac.new(sub, text.encode(), hashlib.sha256).hexdigest()


def _label(category: str) -> str:
    return DATA_CATEGORY_LABELS_EN.get(category) or category.replace("_", " ").capitalize()


def answer_of(notice: NoticeMessage, incident: IncidentMessage) -> Confirmed:
    content = incident.content
    contact = content.contact
    return Confirmed(
        incident_title=incident.title,
        sender_name=content.sender_name,
        breach_description=content.breach_description,
        agencies=[{"name": a.name, "data_categories": [_label(c) for c in a.data_categories]}
                  for a in notice.agencies],
        contact={"organisation": contact.organisation, "phone": contact.phone,
                 "web_address": contact.web_address, "hours": contact.hours},
        version=notice.version,
    )


def check(session: Session, vault: Vault, typed_reference: str, date_of_birth: date
          ) -> Confirmed | None:
    """What the notice printed with this reference said, when the date of birth is one of its
    person's; else None (whether no notice has the reference or the date differs)."""
    code = normalise_reference(typed_reference) or _NO_SUCH_CODE
    row = notices.by_reference(session, code)
    text = dob_text(date_of_birth)
    digest, stored = None, []
    if row is not None and row.key_id:
        try:
            digest = vault.digest(text, label=DOB_LABEL, key_id=row.key_id)
            stored = row.dob_checks
        except SealError:  # the key is gone (purged) or not here yet: nothing can match
            digest = None
    # No notice (or no key): a decoy digest compared with decoy slots, which never match.
    matched = digests_match(digest or _decoy_digest(text), stored)
    answer = _confirmed(session, row.notice_id, row.incident_id) if matched else None
    # The audit entry is written on every path (the same work); it never holds the date or
    # the typed reference: the notice id and the outcome only.
    audit.record(session, Act(
        "public", "public", ACTION, row.incident_id if row else None,
        (row.notice_id, "confirmed" if answer else "not-confirmed") if row
        else ("-", "not-confirmed")))
    return answer


def _confirmed(session: Session, notice_id: str, incident_id: str) -> Confirmed | None:
    payload = notices.notice_payload(session, notice_id)
    if payload is None:
        return None
    notice = decode_notice(payload)
    revision = notices.pinned_revision(session, notice_id)
    incident = (incidents.load_revision(session, incident_id, revision) if revision is not None
                else None) or incidents.load_incident(session, incident_id)
    return answer_of(notice, incident) if incident is not None else None


class CheckLimits:
    """The check's rate limits: per client, and for everyone together, so neither one client
    nor many together can try references quickly. Checked before any work, so a refusal says
    nothing about a reference.

    The binding limits are shared by every replica: token buckets in dispatch's database
    (services/common/shared_buckets.py), keyed by a keyed digest of the client's address (the
    address is never stored) and by "everyone". In front of them, in this process, the same
    limits again (services/common/ratelimit.py) as a deliberate first line: they never let
    more through than the shared ones would for this replica alone, and they turn a flood
    from one address or from many away without a database round trip (the shared "everyone"
    row is the one every check queues on). `wait_time` is the first line, `take` the shared
    limits (a unit of work)."""

    # Refilled buckets are deleted every this many shared checks of a replica.
    FORGET_EVERY = 1000

    def __init__(self, per_minute: int, burst: int, global_per_s: float, global_burst: int,
                 digest: Callable[[str], str]):
        self.clients = KeyedRateLimiter(per_minute, burst, max_keys=100_000)
        self.everyone = TokenBucket(global_per_s, global_burst)
        self.shared_client = Limit("check.client", per_minute / 60.0, burst)
        self.shared_everyone = Limit("check.everyone", global_per_s, global_burst)
        self._digest = digest
        self._taken = 0

    def wait_time(self, client: str) -> float:
        """The first line, in this process: 0, go ahead (a token of each taken); else the
        seconds to wait."""
        if (wait := self.clients.wait_time(client)) > 0:
            return wait
        return self.everyone.wait_time()

    def client_key(self, client: str) -> str:
        """What the shared bucket of a client is keyed by: a keyed digest of its address (the
        same in every replica; worthless without the key)."""
        return self._digest(client)

    def take(self, session: Session, client_key: str) -> float:
        """The shared limits (one round trip each): 0.0, go ahead; else the seconds to wait."""
        self._taken += 1
        if self._taken % self.FORGET_EVERY == 0:
            shared_buckets.forget_full(session, [self.shared_client, self.shared_everyone])
        if (wait := shared_buckets.take(session, self.shared_client, client_key)) > 0:
            return wait
        return shared_buckets.take(session, self.shared_everyone, EVERYONE)


