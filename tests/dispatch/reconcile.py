"""Ground truth for the dispatch fault tests: what the gateways THEMSELVES say they sent (the
SMTP gateway's maildir, the SMS gateway's message log), per person per channel, against what
each person should have got. "Nothing crashed" is not a result; this table is."""

from __future__ import annotations

import email
import email.policy
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.dispatch.delivery_state import parse_reference


def emails_in(maildir: Path) -> list[tuple[str, str]]:
    """(notice_id, Message-ID) of every message the SMTP gateway took (bounces excluded)."""
    found = []
    for folder in ("new", "cur"):
        for path in sorted((maildir / folder).glob("*")) if (maildir / folder).exists() else ():
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if msg.get_content_type() == "multipart/report":  # a DSN we sent back
                continue
            reference = msg["X-Panui-Reference"]
            if reference:
                found.append((parse_reference(str(reference))[0], str(msg["Message-ID"])))
    return found


def sms_in(*logs: Path) -> list[tuple[str, str]]:
    """(notice_id, gateway log name) of every message the SMS gateways took."""
    found = []
    for log in logs:
        if log.exists():
            for line in log.read_text().splitlines():
                found.append((parse_reference(json.loads(line)["reference"])[0], log.stem))
    return found


@dataclass
class Reconciliation:
    """Sends per person per channel, from the gateways, against the persons expected."""

    expected: Mapping[str, Mapping[str, int]]  # person -> channel -> sends expected (0, 1)
    sends: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    message_ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def of(cls, expected: Mapping[str, Mapping[str, int]], person_of: Mapping[str, str], *,
           maildir: Path | None = None, sms_logs: Iterable[Path] = ()) -> Reconciliation:
        r = cls(expected)
        if maildir is not None:
            for notice_id, message_id in emails_in(maildir):
                person = person_of.get(notice_id, f"?{notice_id}")
                r.sends[person]["email"] += 1
                r.message_ids[person].add(message_id)
        for notice_id, _gateway in sms_in(*sms_logs):
            r.sends[person_of.get(notice_id, f"?{notice_id}")]["sms"] += 1
        return r

    def table(self) -> dict[str, dict[str, int]]:
        """channel -> {expected, exactly_once, never, twice_or_more, unexpected}."""
        out: dict[str, dict[str, int]] = {}
        channels = {c for want in self.expected.values() for c in want} | {
            c for got in self.sends.values() for c in got}
        for channel in sorted(channels):
            row = Counter()
            for person in set(self.expected) | set(self.sends):
                want = self.expected.get(person, {}).get(channel, 0)
                got = self.sends.get(person, Counter())[channel]
                row["expected"] += want
                if want and got == 1:
                    row["exactly_once"] += 1
                elif want and got == 0:
                    row["never"] += 1
                elif got >= 2:
                    row["twice_or_more"] += 1
                elif not want and got:
                    row["unexpected"] += 1
            out[channel] = dict(row)
        return out

    def wrong(self) -> dict[str, dict[str, int]]:
        """person -> {channel: sends} for everyone who did not get exactly what was expected."""
        bad = {}
        for person in set(self.expected) | set(self.sends):
            want = {c: n for c, n in self.expected.get(person, {}).items() if n}
            got = {c: n for c, n in self.sends.get(person, Counter()).items() if n}
            if want != got:
                bad[person] = got
        return bad

    def assert_exact(self) -> None:
        assert not self.wrong(), f"reconciliation {self.table()}; wrong: {self.wrong()}"
