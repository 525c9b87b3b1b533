"""The unreachable list as CSV, for the postal mail-out and the s 115 public notice. The only
place besides rendering where a person's details are opened (in memory, never logged)."""

import io
import logging

from services.common.crypto import Sealer, SealError
from services.common.csvsafe import SafeWriter
from services.common.messages import decode_notice, notice_sealing_context
from services.dispatch.content.models import reference_of
from services.dispatch.store.reports import Unreachable

log = logging.getLogger(__name__)

CSV_COLUMNS = [
    "reference_code", "notice_id", "list", "language", "addressee_name", "on_behalf_of",
    "address_line1", "address_line2", "suburb", "city", "postcode", "agencies",
]


def unreachable_csv(sealer: Sealer, rows: list[Unreachable]) -> str:
    out = io.StringIO()
    writer = SafeWriter(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        notice = decode_notice(row.notice_payload)
        try:
            opened = sealer.open(notice.sealed, notice_sealing_context(notice.notice_id))
        except SealError:
            log.error("unreachable export: notice could not be opened",
                      extra={"notice_id": notice.notice_id})
            opened = {"recipient": {}}
        recipient = opened.get("recipient") or {}
        rep = opened.get("representative") or None
        person = " ".join(p for p in (recipient.get("given_names"), recipient.get("family_name")) if p)
        address = (recipient.get("address") or {}) if not rep else {}
        writer.writerow((
            reference_of(notice),
            notice.notice_id,
            "postal" if row.channel == "postal" else "public-notice",
            notice.preferred_language,
            (rep.get("name") if rep else person) or "",
            person if rep else "",
            address.get("line1"), address.get("line2"), address.get("suburb"),
            address.get("city"), address.get("postcode"),
            "; ".join(a.name for a in notice.agencies),
        ))
    return out.getvalue()
