"""Dispatch's data access (the DAO): every SQL statement of the service, and nothing else.

- incidents.py   dispatch_incident: the latest revision of each incident
- notices.py     dispatch_notice: notices as received, and which still wait for their incident
- deliveries.py  delivery: new rows, claiming due ones, leases, recording changes
- events.py      the delivery-event.v1 written to the outbox with every change
- reports.py     what coordinators read: the summary and the unreachable list
- reconciliation.py  what an agency reads: the notices naming it and their delivery status
- holds.py       dispatch_notice_hold: whether a notified person is held under s 116 now

Functions take a SQLAlchemy `Session` first and return plain values or dataclasses; they run
in the caller's transaction (`await db.run(fn, *args)`), so a state change and its event are
committed together (transactional outbox). Which change to make is decided elsewhere:
delivery_state.py and policy.py (the rules), tracking.py (the units of work combining both).
Every statement runs on PostgreSQL and on SQLite (`make run`).
"""
