"""The renderer's typed view of its two inputs, adapted from the Kafka contract.

services/common/messages.py is the source of truth. These models are a thin adapter over it:
- `Notice.from_contract(notice, sealed_recipient)`: a NoticeMessage plus its opened
  SealedRecipient, flattened into what the templates need (one person's details only);
- `IncidentContent.from_contract(incident)`: an IncidentMessage's content, title and id.
Field names follow the contract (`privacy_commissioner_notified_on`, `contact.organisation`,
`templates_mi`); the older names (`privacy_commissioner_notified_date`, `contact.name`) are still
accepted so existing fixtures keep working. Unknown fields are ignored so the contract can grow
without breaking dispatch.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from services.common.messages import templates_fingerprint
from services.common.references import legacy_reference

# Plain language (grade 5.5, tests/dispatch/test_plain_language.py).
DEFAULT_COMPLAINT_RIGHT = (
    "If you are not happy with how we dealt with this, you have the right to complain to the "
    "Privacy Commissioner. Call their office on 0800 803 909, or type privacy.org.nz into your "
    "browser."
)
DEFAULT_NEVER_ASK = [
    "your passwords",
    "payment or bank details",
    "one-time codes sent to your phone or email",
    "remote access to your computer or phone",
]

if TYPE_CHECKING:  # pragma: no cover
    from services.common.messages import IncidentMessage, NoticeMessage, SealedRecipient

E164 = re.compile(r"^\+[1-9]\d{7,14}$")

def derive_reference_code(notice_id: str) -> str:
    """The reference of a notice that carries none (made before references were keyed, and
    test fixtures): services.common.references.legacy_reference."""
    return legacy_reference(notice_id)


def reference_of(notice: NoticeMessage) -> str:
    """The reference a notice prints: its own (keyed, made by dedupe), else the legacy code."""
    return notice.reference_code or legacy_reference(notice.notice_id)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Address(_Model):
    # Optional like the contract's Address: whatever the agencies held, as given.
    line1: str | None = None
    line2: str | None = None
    suburb: str | None = None
    city: str | None = None
    postcode: str | None = None

    def lines(self) -> list[str]:
        town = " ".join(p for p in (self.city, self.postcode) if p)
        return [p for p in (self.line1, self.line2, self.suburb, town) if p]

    @property
    def usable(self) -> bool:
        """Enough to post a letter: a street line and a town or postcode."""
        return bool(self.line1 and (self.city or self.postcode))


def _check_mobile(v: str | None) -> str | None:
    if v is not None and not E164.match(v):
        raise ValueError("mobile must be in E.164 form, e.g. +6421...")  # value not echoed
    return v


class Recipient(_Model):
    given_names: str | None = None
    family_name: str | None = None
    email: str | None = None
    mobile: str | None = None
    address: Address | None = None

    _mobile = field_validator("mobile")(_check_mobile)

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.given_names, self.family_name) if p)


class Representative(_Model):
    name: str | None = None
    relationship: str | None = None
    email: str | None = None
    mobile: str | None = None
    # Not in notice.v1; without it a representative cannot be reached by post (we must not
    # post a representative's letter to the person's own address - s116 holds may apply).
    address: Address | None = None

    _mobile = field_validator("mobile")(_check_mobile)


class AgencyEntry(_Model):
    agency_id: str
    name: str
    data_categories: list[str] = Field(default_factory=list)
    document_count: int | None = Field(default=None, ge=0)  # None: not known, never zero


class Correction(_Model):
    """A correction notice's correction (NoticeCorrection in the contract)."""

    kind: Literal["sent_in_error", "agency_not_involved"]
    agencies: list[AgencyEntry] = Field(min_length=1)  # the agencies named wrongly

    @property
    def names(self) -> str:
        names = [a.name for a in self.agencies]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class ToldBefore(_Model):
    """The earlier version of the person's notice that reached them (a gateway took it), as a
    correction letter names it: how, when (New Zealand date, as a letter prints it) and its
    reference — what the person holds in their hand."""

    reference: str
    sent_on: str  # "3 March 2026"
    channel: Literal["email", "sms", "postal"]

    @classmethod
    def of(cls, notice_id: str, reference_code: str | None, channel: str,
           first_attempt_at: float | None) -> ToldBefore | None:
        """From what dispatch stored of the earlier send (store/lookups.told_before); None
        when it is not known when it went."""
        if first_attempt_at is None or channel not in ("email", "sms", "postal"):
            return None
        on = datetime.fromtimestamp(first_attempt_at, UTC).astimezone(ZoneInfo("Pacific/Auckland"))
        return cls(reference=reference_code or derive_reference_code(notice_id),
                   sent_on=f"{on.day} {on:%B %Y}", channel=channel)


class Notice(_Model):
    notice_id: str
    incident_id: str
    person_id: str
    version: int = Field(default=1, ge=1)
    recipient: Recipient
    preferred_language: Literal["en", "mi"] = "en"
    hold: Any | None = None
    representative: Representative | None = None
    agencies: list[AgencyEntry] = Field(min_length=1)
    reference_code: str | None = None
    # Whether an earlier version of this notice reached the person (dispatch knows: an
    # earlier version still unsent when this one came was superseded, never sent). None: any
    # version after the first is taken to update one.
    updates_earlier: bool | None = None
    correction: Correction | None = None  # a correction notice (render.py renders it apart)
    told_before: ToldBefore | None = None  # a correction: the version it corrects, when known

    @property
    def effective_reference_code(self) -> str:
        return self.reference_code or derive_reference_code(self.notice_id)

    @property
    def is_amendment(self) -> bool:
        """Says "this updates the notice we sent you earlier"."""
        if self.updates_earlier is not None:
            return self.updates_earlier and self.version > 1
        return self.version > 1

    # The addressee is who the notice goes to: the representative when there is one.
    @property
    def addressee_name(self) -> str:
        if self.representative:
            return self.representative.name or ""
        return self.recipient.full_name

    @property
    def addressee_email(self) -> str | None:
        return self.representative.email if self.representative else self.recipient.email

    @property
    def addressee_mobile(self) -> str | None:
        return self.representative.mobile if self.representative else self.recipient.mobile

    @property
    def addressee_address(self) -> Address | None:
        address = self.representative.address if self.representative else self.recipient.address
        return address if address is not None and address.usable else None

    @classmethod
    def from_contract(cls, notice: NoticeMessage, sealed: SealedRecipient | dict,
                      updates_earlier: bool | None = None,
                      told_before: ToldBefore | None = None) -> Notice:
        """A contract NoticeMessage plus its opened SealedRecipient (the plaintext of
        `notice.sealed`, opened with notice_sealing_context(notice.notice_id))."""
        opened = sealed if isinstance(sealed, dict) else sealed.model_dump(mode="json")
        return cls(
            notice_id=notice.notice_id,
            incident_id=notice.incident_id,
            person_id=notice.person_id,
            version=notice.version,
            recipient=opened["recipient"],
            representative=opened.get("representative"),
            preferred_language=notice.preferred_language,
            agencies=[a.model_dump(mode="json") for a in notice.agencies],
            reference_code=notice.reference_code,
            updates_earlier=updates_earlier,
            told_before=told_before,
            correction=notice.correction.model_dump(mode="json") if notice.correction else None,
        )


class Contact(_Model):
    # The contract calls it `organisation`; `name` is the older spelling.
    name: str = Field(validation_alias=AliasChoices("organisation", "name"))
    phone: str
    web_address: str
    hours: str | None = None

    @field_validator("web_address")
    @classmethod
    def _typed_not_link(cls, v: str) -> str:
        # The address is for typing in, so drop any scheme; a URL scheme invites linkifying.
        return re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", v.strip()).rstrip("/")


class IncidentTemplates(_Model):
    """Jinja2 template *source* supplied by the coordinator (e.g. te reo Māori)."""

    email_subject: str | None = None
    email_text: str | None = None
    email_html: str | None = None
    sms: str | None = None
    sms_short: str | None = None


class IncidentContent(_Model):
    incident_id: str
    title: str
    breach_description: str
    suspected_holder_statement: str
    steps_taken: str
    mitigation_advice: list[str] = Field(min_length=1)
    privacy_commissioner_notified: bool
    privacy_commissioner_notified_on: date | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "privacy_commissioner_notified_on", "privacy_commissioner_notified_date"
        ),
    )
    complaint_right: str = DEFAULT_COMPLAINT_RIGHT
    contact: Contact
    sender_name: str
    never_ask: list[str] = Field(default_factory=lambda: list(DEFAULT_NEVER_ASK), min_length=1)
    mi_templates: IncidentTemplates | None = Field(
        default=None, validation_alias=AliasChoices("templates_mi", "mi_templates")
    )
    # Whether mi_templates are the ones the coordinator approved after a preview
    # (from_contract compares the fingerprints); unapproved templates are never used.
    mi_templates_approved: bool = False
    bilingual: bool = False
    # Optional {language: {category: label}} so coordinators can supply te reo labels.
    data_category_labels: dict[str, dict[str, str]] = Field(default_factory=dict)
    sms_segment_budget: int = Field(default=3, ge=1, le=10)

    @classmethod
    def from_contract(cls, incident: IncidentMessage) -> IncidentContent:
        """The renderer's view of a contract IncidentMessage (incidents.v1)."""
        content = incident.content.model_dump(mode="json")
        templates = content.get("templates_mi") or None
        content["templates_mi"] = templates
        content["mi_templates_approved"] = bool(templates) and (
            content.get("templates_mi_approved") == templates_fingerprint(templates))
        return cls.model_validate(
            {**content, "incident_id": incident.incident_id, "title": incident.title}
        )
