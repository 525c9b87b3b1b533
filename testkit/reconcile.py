"""Reconciliation against ground truth: for every true person, what actually reached them —
read from the gateways' own logs (the SMTP gateway's maildir, the SMS gateways' message logs)
and dispatch's postal list — not from what the services believe they did.

A message names its person by address (every true person's email, mobile and street line are
theirs alone, testkit/groundtruth.py) and its notice by reference (`<notice_id>:<channel>…`);
the notice's version (1 = first notice, 2+ = amendments) comes from dispatch's notices.

Per person: **never** — nothing on any channel; **twice or more** — the same notice version
reached them more than once (on one channel, or on two channels where the mode sends one);
otherwise **exactly once**. A letter on the postal list as well as an email or SMS is twice
too (post is only ever the fallback). Per channel (persons whose notice should go there): once, never,
twice+, and the duplicate copies. Plus dedupe's side of the truth: notices (dedupe persons)
covering more than one true person, and true persons split over several dedupe persons.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from email.utils import parseaddr

from testkit.groundtruth import GroundTruth
from testkit.system import Observed

CHANNELS = ("email", "sms", "postal")


@dataclass
class ChannelRow:
    expected: int = 0  # persons whose first notice should go here
    exactly_once: int = 0
    never: int = 0
    twice_plus: int = 0
    messages: int = 0  # everything that arrived on this channel
    duplicate_copies: int = 0  # messages beyond one per (person, notice version)


@dataclass
class Reconciliation:
    persons_expected: int
    exactly_once: int
    never: list[int]  # true person indices
    twice_plus: list[int]
    channels: dict[str, ChannelRow]
    duplicate_references: dict[str, int]  # reference -> copies, where copies > 1
    amendments: dict[int, list[int]]  # person -> versions > 1 received (once per version)
    overmerged: list[str]  # dedupe persons holding records of more than one true person
    split: list[int]  # true persons whose records are with more than one dedupe person
    not_expected_notified: list[int]  # persons a scenario withdrew who were notified anyway
    unknown_messages: dict[str, int]  # channel -> messages to nobody in the truth
    received: dict[int, dict[str, Counter]] = field(default_factory=dict, repr=False)
    # (person, notice version) -> {reference: copies} for every person who got that version's
    # email more than once, whatever the references (a resend under a new reference included).
    email_duplicates: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict, repr=False)

    @property
    def lost(self) -> int:
        return len(self.never)

    @property
    def duplicated(self) -> int:
        return len(self.twice_plus)

    def copies(self, person: int, channel: str, version: int = 1) -> int:
        return self.received.get(person, {}).get(channel, Counter())[version]

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("received")
        out.pop("email_duplicates")
        out["lost"], out["duplicated"] = self.lost, self.duplicated
        return out

    def table(self) -> str:
        lines = [
            f"persons expected        {self.persons_expected}",
            f"notified exactly once   {self.exactly_once}",
            f"never notified (lost)   {self.lost}",
            f"notified twice or more  {self.duplicated}",
            "",
            f"{'channel':<8} {'expected':>8} {'once':>6} {'never':>6} {'twice+':>7} "
            f"{'messages':>9} {'dup copies':>11}",
        ]
        for name, row in self.channels.items():
            lines.append(f"{name:<8} {row.expected:>8} {row.exactly_once:>6} {row.never:>6} "
                         f"{row.twice_plus:>7} {row.messages:>9} {row.duplicate_copies:>11}")
        lines += [
            "",
            f"notices covering more than one true person  {len(self.overmerged)}",
            f"true persons split over several notices     {len(self.split)}",
            f"amendments received (persons)               {len(self.amendments)}",
            f"withdrawn persons notified anyway           {len(self.not_expected_notified)}",
            f"messages to no known person                 {sum(self.unknown_messages.values())}",
        ]
        return "\n".join(lines)

    def assert_clean(self, email_window: set[str] = frozenset(), max_email_copies: int = 2,
                     fallback_allowed: bool = False) -> None:
        """0 lost, 0 duplicate SMS or letters, email duplicates only for references in
        `email_window` (sent, then a crash before the send was recorded: the documented SMTP
        window), at most `max_email_copies` each; no over-merge. Unless `fallback_allowed`
        (a scenario where gateways refuse), every notice went to the channel it should."""
        problems = []
        if self.never:
            problems.append(f"{self.lost} persons never notified (e.g. {self.never[:5]})")
        if not fallback_allowed:
            for channel, row in self.channels.items():
                if row.never:
                    problems.append(f"{row.never} persons got nothing on {channel}, their channel")
        for channel in ("sms", "postal"):
            if self.channels[channel].duplicate_copies:
                problems.append(f"{self.channels[channel].duplicate_copies} duplicate {channel} copies")
        outside = self.emails_outside_window(email_window, max_email_copies)
        if outside:
            problems.append(f"{len(outside)} email references sent twice outside the SMTP window "
                            f"(e.g. {sorted(outside.items())[:3]})")
        cross = [p for p in self.twice_plus
                 if all(self.copies(p, c) <= 1 for c in CHANNELS)]
        if cross:
            problems.append(f"{len(cross)} persons got their first notice on two channels")
        if self.overmerged:
            problems.append(f"{len(self.overmerged)} notices cover more than one true person")
        if self.not_expected_notified:
            problems.append(f"{len(self.not_expected_notified)} withdrawn persons notified")
        assert not problems, "reconciliation failed: " + "; ".join(problems) + "\n" + self.table()


    def emails_outside_window(self, window: set[str], max_copies: int = 2) -> dict[str, int]:
        """References of the duplicate emails the SMTP window does not explain. A person's
        second copy is explained only when every copy of that notice version carries ONE
        reference, accepted-but-unrecorded at the crash (`window`), at most `max_copies`
        times: a resend under a new reference is a duplicate whatever its reference."""
        outside = {r: n for r, n in self.duplicate_references.items()
                   if ":email" in r and (r not in window or n > max_copies)}
        for refs in self.email_duplicates.values():
            if not (len(refs) == 1 and all(r in window and n <= max_copies for r, n in refs.items())):
                outside.update(refs)
        return outside


def _notice_id(reference: str) -> str:
    return reference.split(":", 1)[0]


def reconcile(truth: GroundTruth, observed: Observed) -> Reconciliation:
    by_email, by_mobile = truth.person_by_email(), truth.person_by_mobile()
    by_address = truth.person_by_address()
    versions = observed.notice_versions
    received: dict[int, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    channels = {c: ChannelRow() for c in CHANNELS}
    unknown: Counter = Counter()
    references: Counter = Counter()
    email_refs: dict[tuple[int, int], Counter] = defaultdict(Counter)

    def arrived(channel: str, person, reference: str) -> None:  # noqa: ANN001
        channels[channel].messages += 1
        references[reference] += 1
        if person is None:
            unknown[channel] += 1
            return
        version = versions.get(_notice_id(reference), 1)
        received[person.index][channel][version] += 1
        if channel == "email":
            email_refs[(person.index, version)][reference] += 1

    for to, reference, _message_id in observed.emails:
        arrived("email", by_email.get(parseaddr(to)[1].lower()), reference)
    for to, reference, _gateway in observed.sms:
        arrived("sms", by_mobile.get(to), reference)
    for line1, notice_id in observed.postal:
        arrived("postal", by_address.get(line1), f"{notice_id}:postal")

    expected = truth.expected()
    exactly, never, twice = 0, [], []
    for person in expected:
        got = received.get(person.index, {})
        wanted = person.expected_channels(truth.mode)
        for channel in wanted:
            n = got.get(channel, Counter())[1]
            row = channels[channel]
            row.expected += 1
            if n == 0:
                row.never += 1
            elif n == 1:
                row.exactly_once += 1
            else:
                row.twice_plus += 1
        total = sum(sum(c.values()) for c in got.values())
        first_on = [c for c in CHANNELS if got.get(c, Counter())[1]]
        if total == 0:
            never.append(person.index)
        elif any(n > 1 for c in got.values() for n in c.values()) or (
                len(first_on) > 1 and (truth.mode != "both" or "postal" in first_on)):
            twice.append(person.index)
        else:
            exactly += 1
    for per_channel in received.values():
        for channel, counts in per_channel.items():
            channels[channel].duplicate_copies += sum(n - 1 for n in counts.values() if n > 1)

    by_record = truth.person_by_record()
    members: dict[tuple[str, str], set[int]] = defaultdict(set)
    homes: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for incident, agency, srid, person_id in observed.assignments:
        p = by_record.get((incident, agency, srid))
        if p is not None:
            members[(incident, person_id)].add(p.index)
            homes[p.index].add((incident, person_id))

    return Reconciliation(
        persons_expected=len(expected),
        exactly_once=exactly,
        never=never,
        twice_plus=twice,
        channels=channels,
        duplicate_references={r: n for r, n in references.items() if n > 1},
        amendments={p: sorted(v for v in counts_by_version(got) if v > 1)
                    for p, got in received.items() if any(v > 1 for v in counts_by_version(got))},
        overmerged=sorted(pid for (_, pid), persons in members.items() if len(persons) > 1),
        split=sorted(p for p, where in homes.items() if len(where) > 1),
        not_expected_notified=sorted(p for p in truth.not_expected if received.get(p)),
        unknown_messages=dict(unknown),
        received={p: dict(c) for p, c in received.items()},
        email_duplicates={k: dict(refs) for k, refs in email_refs.items() if sum(refs.values()) > 1},
    )


def counts_by_version(per_channel: dict[str, Counter]) -> set[int]:
    return {v for counts in per_channel.values() for v in counts}
