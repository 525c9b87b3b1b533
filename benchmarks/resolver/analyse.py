"""Where accuracy is lost, by kind: missed true pairs, false merges and review items grouped by
the comparison levels and the decision's reason. A tuning aid; prints counts, never values.

    .venv/bin/python -m benchmarks.resolver.analyse independent 20000 [seed] [noise] [--learn]
    (--learn: EM level weights too; noise: the generator's noise / damage, default 1.0)
"""
from __future__ import annotations

import os
import sys
from collections import Counter

from benchmarks.resolver.datasets import Dataset, load
from benchmarks.resolver.metrics import accuracy
from services.dedupe.resolver import Resolver


def main(argv: list[str]) -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")
    learn = "--learn" in argv
    argv = [a for a in argv if a != "--learn"]
    kind = argv[0] if argv else "independent"
    size = int(argv[1]) if len(argv) > 1 else 20_000
    seed = int(argv[2]) if len(argv) > 2 else {"nz": 7, "independent": 101}.get(kind, 0)
    noise = float(argv[3]) if len(argv) > 3 else 1.0
    records, truth = load(Dataset(kind, kind, size, seed, noise))
    resolver = Resolver()
    resolver.add_many(records)
    report = resolver.learn_weights(levels=learn)  # as the dedupe service does at release
    print("learned:", {k: v for k, v in report.items() if k in ("lambda", "households")})
    person = {(a, s): p for a, s, p in resolver.assignments()}
    true_of = {r.key: t for r, t in zip(records, truth, strict=True)}
    by_true: dict = {}
    for r, t in zip(records, truth, strict=True):
        by_true.setdefault(t, []).append(r.key)
    missed, merged = Counter(), Counter()
    unblocked = Counter()  # missed pairs blocking never compared, by the levels they would have

    def never_compared(a, b) -> bool:
        ra, rb = resolver._rid_of(a), resolver._rid_of(b)
        return not resolver._index.shares_usable_block(resolver._key_ids(ra), resolver._key_ids(rb))
    for keys in by_true.values():
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                if person[a] != person[b]:
                    ev = resolver.explain_pair(a, b)
                    levels = tuple(f"{p.field}={p.level}" for p in ev.parts if p.level not in ("missing",))
                    missed[(ev.decision, ev.reason[:40], levels)] += 1
                    if never_compared(a, b):
                        unblocked[(ev.decision, levels)] += 1
    by_person: dict = {}
    for key, pid in person.items():
        by_person.setdefault(pid, []).append(key)
    for keys in by_person.values():
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                if true_of[a] != true_of[b]:
                    ev = resolver.explain_pair(a, b)
                    merged[tuple(f"{p.field}={p.level}" for p in ev.parts if p.level != "missing")] += 1
    review = Counter()
    for item in resolver.review_items():
        same = true_of[item.a] == true_of[item.b]
        band = int(item.evidence.weight // 4 * 4) if item.evidence.weight < 1e9 else 999
        review[(item.why, same, band)] += 1
    acc = accuracy([person[r.key] for r in records], truth)
    persons = len(set(person.values()))
    print(f"records {len(records)}, persons {persons}, true {len(by_true)}")
    print(f"precision {acc.precision:.4f} recall {acc.recall:.4f} F1 {acc.f1:.4f} "
          f"review/1k {1000 * sum(review.values()) / persons:.1f}")
    index, pairs = resolver._index, set()
    for kid, held in index._members.items():
        if not isinstance(held, int) and index.usable(kid):
            members = sorted(held)
            pairs.update((x, y) for i, x in enumerate(members) for y in members[i + 1:])
    print(f"candidate pairs (distinct, in usable blocks) {len(pairs)}")
    print(f"missed pairs {sum(missed.values())}:")
    for k, n in missed.most_common(40):
        print(f"  {n:6d}  {k}")
    print(f"of which never compared (no usable block shared) {sum(unblocked.values())}:")
    for k, n in unblocked.most_common(15):
        print(f"  {n:6d}  {k}")
    print(f"falsely merged pairs {sum(merged.values())}:")
    for k, n in merged.most_common(20):
        print(f"  {n:6d}  {k}")
    print(f"review items {sum(review.values())} (why, truly same, weight band):")
    for k, n in sorted(review.items()):
        print(f"  {n:6d}  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
