from services.dedupe.resolver.config import FREQUENCY
from services.dedupe.resolver.weights import ValueFrequency, bucket


def test_bucket_is_floor_log2():
    assert [bucket(n) for n in (1, 2, 3, 4, 7, 8, 300)] == [0, 1, 1, 2, 2, 3, 8]


def test_distinct_people_not_records_are_counted():
    freq = ValueFrequency()
    for _ in range(5):  # one person's five records
        freq.add("mobile", "+64211111111", proxy=1)
    assert freq.distinct("mobile", "+64211111111") == 1
    assert freq.add("mobile", "+64211111111", proxy=2) is True  # 1 -> 2 people: bucket changes
    freq.remove("mobile", "+64211111111", proxy=2)
    assert freq.distinct("mobile", "+64211111111") == 1


def test_a_clinic_phone_shared_by_hundreds_weighs_nothing():
    assert FREQUENCY["mobile"].weight(bucket(1)) == 8.0
    assert FREQUENCY["mobile"].weight(bucket(300)) == 0.0
    assert FREQUENCY["email"].weight(bucket(300)) == 0.0
    # A common surname still counts, but less than a rare one.
    assert FREQUENCY["family"].weight(bucket(5000)) < FREQUENCY["family"].weight(bucket(1))
