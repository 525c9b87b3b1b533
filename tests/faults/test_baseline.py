"""The control: the same small incident with no fault injected reconciles cleanly — every
person notified exactly once on the channel their details call for. Every scenario in this
folder is this run plus one fault."""

import pytest

from testkit.groundtruth import ground_truth

from .conftest import driver_for, settle_and_reconcile

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


async def test_no_fault_every_person_notified_exactly_once(make_system):
    truth = ground_truth(600, agencies=3, seed=11)
    system = await make_system()
    await driver_for(system, truth).run()
    result = await settle_and_reconcile(system, truth, timeout=120)
    result.assert_clean()
    assert result.exactly_once == result.persons_expected == len(truth.persons)
    assert not result.duplicate_references and not result.split
