"""The coordinator's postal mail-out: batch the waiting letters, download a batch's pack (one
PDF + a manifest CSV) for the print house, mark it posted, record returned mail."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from services.common.deps import CoordinatorContext, IdPath
from services.common.errors import ApiError, ErrorResponse
from services.dispatch import mailouts
from services.dispatch.letters.pack import Pack
from services.dispatch.schemas import (
    MailoutBatchList,
    MailoutBatchView,
    MailoutCreate,
    ReturnedMail,
    ReturnedMailResult,
)
from services.dispatch.store import mailouts as store
from services.dispatch.store.mailouts import Batch

router = APIRouter(tags=["coordinator"])
_NOT_FOUND = {404: {"model": ErrorResponse}}


def _view(batch: Batch) -> MailoutBatchView:
    return MailoutBatchView(
        batch_id=batch.batch_id, incident_id=batch.incident_id, letters=batch.letters,
        large_print=batch.large_print, letter_date=batch.letter_date.isoformat(),
        created_at=batch.created_at.isoformat(),
        posted_at=batch.posted_at.isoformat() if batch.posted_at else None,
        returned=batch.returned,
    )


def _no_batch() -> ApiError:
    return ApiError(404, "mailout.not_found", "No such mail-out batch for this incident.")


async def _batch(ctx: CoordinatorContext, incident_id: str, batch_id: str) -> Batch:
    batch = await ctx.db.run(store.get_batch, batch_id)
    if batch is None or batch.incident_id != incident_id:
        raise _no_batch()
    return batch


@router.post("/v1/incidents/{incident_id}/mailouts", status_code=201,
             summary="Put the letters waiting to be posted into a new mail-out batch",
             responses={409: {"model": ErrorResponse}})
async def create_mailout(incident_id: IdPath, body: MailoutCreate,
                         ctx: CoordinatorContext) -> MailoutBatchView:
    # A rehearsal's letters are never printed: there is no simulated print house.
    entry = await ctx.db.run(ctx.runtime.book.get, incident_id)
    if entry is not None and entry.message.dry_run:
        raise ApiError(409, "mailout.dry_run", "This incident is a dry run: its letters are "
                       "not put in a mail-out batch (they would go to a real print house).")
    batch = await ctx.db.run(mailouts.create_batch, incident_id, body.limit, body.large_print,
                             ctx.runtime.clock())
    if batch is None:
        raise ApiError(409, "mailout.no_letters_waiting",
                       "No letters of this incident are waiting to be posted.")
    ctx.runtime.wake()  # the batched letters' events
    return _view(batch)


@router.get("/v1/incidents/{incident_id}/mailouts", summary="The incident's mail-out batches")
async def list_mailouts(incident_id: IdPath, ctx: CoordinatorContext) -> MailoutBatchList:
    return MailoutBatchList(batches=[_view(b) for b in
                                     await ctx.db.run(store.list_batches, incident_id)])


@router.get("/v1/incidents/{incident_id}/mailouts/{batch_id}", responses=_NOT_FOUND,
            summary="One mail-out batch")
async def get_mailout(incident_id: IdPath, batch_id: IdPath,
                      ctx: CoordinatorContext) -> MailoutBatchView:
    return _view(await _batch(ctx, incident_id, batch_id))


async def _pack(ctx: CoordinatorContext, incident_id: str, batch_id: str) -> tuple[Batch, Pack]:
    await _batch(ctx, incident_id, batch_id)
    # Names and addresses leave the system: recorded in the audit log, in the same transaction.
    data = await ctx.audited(
        lambda d: ctx.act("mailout.download", incident_id, batch_id) if d else None,
        mailouts.load_pack, ctx.runtime.book, batch_id)
    if data is None:
        raise _no_batch()
    return data.batch, await asyncio.to_thread(mailouts.render_pack, ctx.runtime.sealer, data)


def _download(body: bytes | str, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
    })


@router.get("/v1/incidents/{incident_id}/mailouts/{batch_id}/letters.pdf",
            response_class=Response, responses=_NOT_FOUND,
            summary="The batch's letters as one print-ready PDF (A4, DL window envelopes)")
async def mailout_pdf(incident_id: IdPath, batch_id: IdPath, ctx: CoordinatorContext) -> Response:
    batch, pack = await _pack(ctx, incident_id, batch_id)
    return _download(pack.pdf, "application/pdf", f"{batch.batch_id}.pdf")


@router.get("/v1/incidents/{incident_id}/mailouts/{batch_id}/manifest.csv",
            response_class=Response, responses=_NOT_FOUND,
            summary="The batch's manifest for the print house (CSV: pages and addresses)")
async def mailout_manifest(incident_id: IdPath, batch_id: IdPath,
                           ctx: CoordinatorContext) -> Response:
    batch, pack = await _pack(ctx, incident_id, batch_id)
    return _download(pack.manifest_csv, "text/csv; charset=utf-8", f"{batch.batch_id}-manifest.csv")


@router.post("/v1/incidents/{incident_id}/mailouts/{batch_id}/posted", responses=_NOT_FOUND,
             summary="The print house posted the batch (its letters become 'sent')")
async def mailout_posted(incident_id: IdPath, batch_id: IdPath,
                         ctx: CoordinatorContext) -> MailoutBatchView:
    await _batch(ctx, incident_id, batch_id)
    batch = await ctx.audited(
        lambda b: ctx.act("mailout.posted", incident_id, batch_id) if b else None,
        mailouts.mark_posted, batch_id, ctx.runtime.clock())
    if batch is None:
        raise _no_batch()
    ctx.runtime.wake()
    return _view(batch)


@router.post("/v1/incidents/{incident_id}/returned-mail",
             responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
             summary="A letter came back undelivered: the person is then unreachable by post")
async def returned_mail(incident_id: IdPath, body: ReturnedMail,
                        ctx: CoordinatorContext) -> ReturnedMailResult:
    runtime = ctx.runtime
    outcome = await ctx.db.run(mailouts.record_returned, runtime.book, incident_id,
                               body.reference, runtime.quiet, runtime.clock())
    if outcome == mailouts.ReturnOutcome.UNKNOWN:
        raise ApiError(404, "returned_mail.unknown_reference",
                       "No letter of this incident has that reference.")
    if outcome == mailouts.ReturnOutcome.NOT_POSTED:
        raise ApiError(409, "returned_mail.not_posted",
                       "That letter's batch has not been marked posted.")
    runtime.wake()  # the fallback's events
    return ReturnedMailResult(outcome=outcome)
