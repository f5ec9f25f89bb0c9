"""The regulators' HTTP API over the audit log (FastAPI; OpenAPI at /openapi.json, docs at /docs).

Bearer tokens name a principal (audit/access.py): a regulator reads its jurisdiction's
operators, an operator itself, ops only the summary; query records only their asker and the
auditors. A violation is listed once, as it stands now (its last record: open, or retracted by
a late fact); its history holds every record. Every call to /v1, answered or refused, is
recorded in the audit log before its answer leaves (audit/query_log.py); if the record cannot
be published the caller gets 503 and no data. Calls over their rate limit (audit/limits.py)
are refused with 429 before that, and recorded together, one record a minute.
"""

import asyncio
import logging
import queue
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.background import BackgroundTask

from audit import queries
from audit.access import AccessFile, Principal, Scope, token_hash
from audit.checkpoint import StatementSigner
from audit.consistency import NotSigned, consistency_document
from audit.export import FORMATS, NoCheckpoint, TooLarge, export
from audit.limits import ADDRESS_RATE, PRINCIPAL_RATE, Buckets, Rate, Tally, address_key, retry_after
from audit.query_log import (
    QueryLog,
    QueryLogUnavailable,
    new_request_id,
    query_record,
    rate_limited_record,
)
from audit.selection import Selection
from audit.store import Store
from contracts.records import ViolationStatus
from contracts.timestamps import format_timestamp
from contracts.vocabulary import Severity

log = logging.getLogger("frtwatch.api")
UNRECORDED = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/healthz")
# Every part of a call is bounded, so is every query record: a longer path or query string, more
# parameters or any body is refused (and recorded within these bounds).
MAX_PATH_CHARS = 1024
MAX_QUERY_CHARS = 4096
MAX_PARAMS = 50
MAX_PARAM_KEY_CHARS = 64
MAX_PARAM_CHARS = 512  # what one query record keeps of each parameter

Kind = Literal["event", "violation", "dead_letter", "query"]
ExportFormat = Literal["json", "jsonl", "csv", "parquet"]
assert set(FORMATS) == {"json", "jsonl", "csv", "parquet"}


class Entry(BaseModel):
    seq: int
    kind: str
    entry_id: str
    operator_id: str
    occurred_at: str
    record: dict[str, Any]


class Page(BaseModel):
    items: list[Entry]
    next_cursor: str | None


class ViolationNow(Entry):
    """A violation as it stands: its current record (the last of its violation_id)."""

    status: ViolationStatus
    records: int  # how many records it has: 1, or more once revised


class ViolationPage(BaseModel):
    items: list[ViolationNow]
    next_cursor: str | None


class ViolationHistory(BaseModel):
    violation_id: str
    status: ViolationStatus | None  # its last record's; None: no record of it in the asker's scope
    items: list[Entry]  # every record, in log order


class Configuration(BaseModel):
    occurred_at: str
    configuration: dict[str, Any]


class DeviceHistory(Page):
    configurations: list[Configuration]


class ViolationCount(BaseModel):
    operator_id: str
    rule_id: str
    severity: str
    policy_pack: str
    count: int  # violations whose current state is open: they stand
    retracted: int  # violations whose current state is retracted


class EventCount(BaseModel):
    operator_id: str
    event_type: str
    count: int


class DeadLetterCount(BaseModel):
    reason: str
    count: int


class Summary(BaseModel):
    violations: list[ViolationCount]
    events: list[EventCount]
    dead_letters: list[DeadLetterCount]


class CheckpointOut(BaseModel):
    size: int
    note: str
    public_key: str


class SignedSize(BaseModel):
    size: int
    note: str  # the checkpoint signed at that size


class ConsistencyOut(BaseModel):
    format: str
    from_: SignedSize = Field(alias="from")
    to: SignedSize
    proof: list[str]  # base64 hashes (RFC 9162 2.1.4)

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Problem(BaseModel):
    detail: str


@dataclass
class Service:
    store: Store
    access_file: AccessFile
    query_log: QueryLog
    statements: StatementSigner  # signs export statements; the log's own key stays with the sink
    rate: Rate = PRINCIPAL_RATE
    anonymous_rate: Rate = ADDRESS_RATE
    refusals_every: float = 60.0  # seconds between records of the calls refused over their rate
    # Idle connections, one taken by each read (requests run in a thread pool): a read waits
    # for no other, however long (chDB serves many connections in one process).
    idle: "queue.SimpleQueue[Store]" = field(default_factory=queue.SimpleQueue)

    @contextmanager
    def reading(self) -> Iterator[Store]:
        try:
            store = self.idle.get_nowait()
        except queue.Empty:
            store = self.store.another()
        try:
            yield store
        finally:
            self.idle.put(store)

    def close(self) -> None:
        """Close the readers' connections (with chDB, the folder is free once all are)."""
        while not self.idle.empty():
            self.idle.get_nowait().close()


def _calendar_time(value: Any) -> Any:
    """RFC 3339 only: pydantic alone would also read "0.5" as seconds since the epoch."""
    if isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("expected an RFC 3339 date-time such as 2026-07-01T00:00:00Z")
    return value


Moment = Annotated[datetime, BeforeValidator(_calendar_time)]
Since = Annotated[Moment | None, Query(description="occurred_at at or after (RFC 3339; naive is UTC)")]
Until = Annotated[Moment | None, Query(description="occurred_at before (RFC 3339; naive is UTC)")]
Limit = Annotated[int, Query(ge=1, le=1000, description="entries per page")]
CursorParam = Annotated[
    str | None,
    Query(alias="cursor", pattern=queries.CURSOR_PATTERN, description="the previous page's next_cursor"),
]
Text = Annotated[str | None, Query(max_length=256)]
REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem},
    401: {"model": Problem},
    403: {"model": Problem},
    413: {"model": Problem, "description": "the API takes no request body"},
    414: {"model": Problem, "description": "a path or query string longer than the API takes"},
    429: {"model": Problem, "description": "over the rate limit: retry after Retry-After seconds"},
    503: {"model": Problem, "description": "the query could not be recorded in the audit log"},
}


def create_app(service: Service) -> FastAPI:
    by_principal, by_address = Buckets(service.rate), Buckets(service.anonymous_rate)
    refused = Tally()

    def record_refusals() -> None:
        taken = refused.take()
        if taken is None:
            return
        since, counts = taken
        try:
            service.query_log.record(rate_limited_record(format_timestamp(_utc(since)), counts))
        except QueryLogUnavailable:
            refused.give_back(since, counts)  # with the next window's

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def every_window() -> None:
            while True:
                await asyncio.sleep(service.refusals_every)
                await run_in_threadpool(record_refusals)

        recorder = asyncio.create_task(every_window())
        try:
            yield
        finally:
            recorder.cancel()
            await run_in_threadpool(record_refusals)

    app = FastAPI(
        title="frtwatch regulators' API",
        version="1",
        description="Query and export the tamper-evident audit log of facial-recognition deployments.",
        lifespan=lifespan,
    )
    bearer = HTTPBearer(auto_error=False, description="an API token (frtwatch api token)")

    def principal(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        if credentials is None:
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        found = service.access_file.current().authenticate(credentials.credentials)
        if found is None:
            request.state.unknown_token = token_hash(credentials.credentials)[:12]
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        request.state.principal = found
        return found

    Asker = Annotated[Principal, Depends(principal)]

    def rows_scope(asker: Principal, operator_id: str | None) -> Scope:
        """What ``asker`` may read here row by row; refuse ops and foreign operators."""
        scope = service.access_file.current().scope(asker)
        if scope is None:
            raise HTTPException(403, "the ops role reads aggregates only: /v1/summary")
        _check_operator(asker, frozenset(scope.operators), operator_id)
        return scope

    def _check_operator(asker: Principal, allowed: frozenset[str], operator_id: str | None) -> None:
        if operator_id is not None and operator_id not in allowed:
            if asker.role == "regulator":
                raise HTTPException(
                    403, f"operator {operator_id} is outside jurisdiction {asker.jurisdiction}"
                )
            if asker.role == "auditor":
                raise HTTPException(403, "an auditor reads query records (kind=query), no operator's rows")
            raise HTTPException(403, "an operator reads only its own entries")

    def over_limit(request: Request) -> tuple[str, float]:
        """Who pays for this call (its principal, or without a known token its address), and
        how long it must wait: 0 if it may go on."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found = service.access_file.current().authenticate(token) if scheme.lower() == "bearer" else None
        if found is not None:
            key = f"principal {found.name}"
            return key, by_principal.take(key)
        key = address_key(request.client.host if request.client else None)
        return key, by_address.take(key)

    def answered(request: Request, rows: int) -> None:
        request.state.rows = rows

    def cursor(text: str | None) -> queries.Cursor | None:
        try:
            return queries.Cursor.decode(text) if text else None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    @app.middleware("http")
    async def recorded(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path in UNRECORDED:
            return await call_next(request)
        payer, wait = over_limit(request)
        if wait:  # not answered, so not recorded on its own: counted, recorded once a window
            refused.add(payer)
            return JSONResponse(
                {"detail": "too many calls: over the rate limit"},
                status_code=429,
                headers={"Retry-After": retry_after(wait)},
            )
        request_id = new_request_id()
        refusal = too_long(request)
        try:
            response = refusal if refusal is not None else await call_next(request)
        except Exception:  # recorded like any answer; the caller learns only the request id
            log.exception("request %s failed", request_id)
            response = JSONResponse({"detail": "internal error", "request_id": request_id}, status_code=500)
        record = _record(request, request_id, response.status_code)
        try:
            await run_in_threadpool(service.query_log.record, record)
        except QueryLogUnavailable:
            if response.background is not None:
                await response.background()
            return JSONResponse(
                {"detail": "the query could not be recorded in the audit log, so it is not answered"},
                status_code=503,
                headers={"X-Request-Id": request_id},
            )
        response.headers["X-Request-Id"] = request_id
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/violations", response_model=ViolationPage, responses=REFUSALS, tags=["queries"])
    def violations(
        request: Request,
        asker: Asker,
        operator_id: Text = None,
        site_id: Text = None,
        device_id: Text = None,
        rule_id: Text = None,
        severity: Severity | None = None,
        policy_pack: Text = None,
        status: Annotated[
            ViolationStatus | None, Query(description="only violations whose current state is this")
        ] = None,
        since: Since = None,
        until: Until = None,
        cursor_: CursorParam = None,
        limit: Limit = 100,
    ) -> ViolationPage:
        """Violations, oldest first, one page at a time; each once, as its current record (the
        last of its violation_id) with its status and how many records it has."""
        scope = rows_scope(asker, operator_id)
        selection = Selection(
            kind="violation", operator_id=operator_id, site_id=site_id, device_id=device_id,
            rule_id=rule_id, severity=severity, policy_pack=policy_pack, since=since, until=until,
            operators=scope.operators, askers=scope.askers,
        )  # fmt: skip
        with service.reading() as store:
            items, following = queries.violations(store, selection, limit, cursor(cursor_), status)
        answered(request, len(items))
        return ViolationPage(
            items=[ViolationNow(**item) for item in items],
            next_cursor=following.encode() if following else None,
        )

    @app.get(
        "/v1/violations/{violation_id}/history",
        response_model=ViolationHistory,
        responses=REFUSALS,
        tags=["queries"],
    )
    def violation_history(
        request: Request, asker: Asker, violation_id: Annotated[str, PathParam(max_length=256)]
    ) -> ViolationHistory:
        """Every record of one violation in log order: the original, and any retraction or late
        detection; the last is its current state. Like the other histories, a violation outside
        the asker's scope (or none at all) has no records and no status: which it is stays unsaid."""
        scope = rows_scope(asker, None)
        selection = Selection(
            kind="violation", violation_id=violation_id, operators=scope.operators, askers=scope.askers
        )
        with service.reading() as store:
            records = queries.history(store, selection)
        answered(request, len(records))
        return ViolationHistory(
            violation_id=violation_id,
            status=queries.current_status(records) if records else None,
            items=[Entry(**record) for record in records],
        )

    @app.get("/v1/subjects/{subject_ref}/history", response_model=Page, responses=REFUSALS, tags=["queries"])
    def subject_history(
        request: Request,
        asker: Asker,
        subject_ref: Annotated[str, PathParam(max_length=256)],
        operator_id: Text = None,
        since: Since = None,
        until: Until = None,
        cursor_: CursorParam = None,
        limit: Limit = 100,
    ) -> Page:
        """Everything about one (pseudonymous) subject: each recognition with its legal basis and
        consent_id, the consents granted and withdrawn, and the violations."""
        scope = rows_scope(asker, operator_id)
        selection = Selection(
            subject_ref=subject_ref, operator_id=operator_id, since=since, until=until,
            operators=scope.operators, askers=scope.askers,
        )  # fmt: skip
        return _page(request, selection, limit, cursor(cursor_))

    @app.get("/v1/devices/{device_id}/history", response_model=DeviceHistory, responses=REFUSALS,
             tags=["queries"])  # fmt: skip
    def device_history(
        request: Request,
        asker: Asker,
        device_id: Annotated[str, PathParam(max_length=256)],
        event_type: Text = None,
        since: Since = None,
        until: Until = None,
        cursor_: CursorParam = None,
        limit: Limit = 100,
    ) -> DeviceHistory:
        """A device's events and violations, and its declared configuration over time."""
        scope = rows_scope(asker, None)
        selection = Selection(
            device_id=device_id, event_type=event_type, since=since, until=until,
            operators=scope.operators, askers=scope.askers,
        )  # fmt: skip
        found = _page(request, selection, limit, cursor(cursor_))
        with service.reading() as store:
            configured = queries.configurations(
                store, Selection(device_id=device_id, operators=scope.operators, askers=scope.askers)
            )
        return DeviceHistory(
            items=found.items,
            next_cursor=found.next_cursor,
            configurations=[Configuration(**c) for c in configured],
        )

    @app.get("/v1/summary", response_model=Summary, responses=REFUSALS, tags=["queries"])
    def summary(
        request: Request, asker: Asker, operator_id: Text = None, since: Since = None, until: Until = None
    ) -> Summary:
        """Counts of violations, events and dead letters: the one view every role has."""
        allowed = service.access_file.current().operators(asker)
        if allowed is not None:
            _check_operator(asker, allowed, operator_id)
        selection = Selection(
            operator_id=operator_id, since=since, until=until,
            operators=tuple(sorted(allowed)) if allowed is not None else None,
        )  # fmt: skip
        with service.reading() as store:
            counts = queries.summary(store, selection)
        answered(request, sum(len(v) for v in counts.values()))
        return Summary.model_validate(counts)

    @app.get(
        "/v1/export",
        responses={**REFUSALS, 200: {"content": {"application/zip": {}, "application/json": {}}}},
        response_class=FileResponse,
        tags=["exports"],
    )
    def export_entries(
        request: Request,
        asker: Asker,
        format: ExportFormat = "jsonl",
        kind: Kind | None = None,
        operator_id: Text = None,
        site_id: Text = None,
        device_id: Text = None,
        subject_ref: Text = None,
        rule_id: Text = None,
        severity: Severity | None = None,
        policy_pack: Text = None,
        violation_id: Annotated[
            str | None, Query(max_length=256, description="every record of one violation")
        ] = None,
        since: Since = None,
        until: Until = None,
    ) -> Response:
        """Entries with their inclusion proofs and the covering signed checkpoint: a bundle
        (json), or a zip of the bundle and a table (jsonl, csv, parquet). Every record of a
        selected violation is an entry (its history); the table names each one's current_status.
        `frtwatch verify` checks either offline."""
        scope = rows_scope(asker, operator_id)
        selection = Selection(
            kind=kind, operator_id=operator_id, site_id=site_id, device_id=device_id,
            subject_ref=subject_ref, rule_id=rule_id, severity=severity, policy_pack=policy_pack,
            violation_id=violation_id, since=since, until=until,
            operators=scope.operators, askers=scope.askers,
        )  # fmt: skip
        try:
            with service.reading() as store:
                made = export(store, service.statements, selection)
        except NoCheckpoint as error:
            raise HTTPException(409, str(error)) from None
        except TooLarge as error:
            raise HTTPException(400, str(error)) from None
        answered(request, made.count)
        if format == "json":  # streamed as it is written, a block of entries at a time

            def streamed() -> Iterator[bytes]:
                with service.reading() as store:
                    yield from replace(made, store=store).json_chunks()

            disposition = {"Content-Disposition": 'attachment; filename="frtwatch-export.json"'}
            return StreamingResponse(streamed(), media_type="application/json", headers=disposition)
        with service.reading() as store, tempfile.NamedTemporaryFile(suffix=".zip", delete=False) as out:
            replace(made, store=store).write(out.file, format)  # a zip is written whole, then sent
        return FileResponse(
            out.name,
            media_type="application/zip",
            filename="frtwatch-export.zip",
            background=BackgroundTask(Path(out.name).unlink, missing_ok=True),
        )

    @app.get("/v1/checkpoint", response_model=CheckpointOut, responses=REFUSALS, tags=["verification"])
    def checkpoint(request: Request, asker: Asker) -> CheckpointOut:
        """The latest signed tree head and the log's public key, to verify exports against."""
        with service.reading() as store:
            latest = store.latest_checkpoint()
        if latest is None:
            raise HTTPException(409, "the audit log has no signed checkpoint yet")
        answered(request, 1)
        return CheckpointOut(size=latest[0], note=latest[1], public_key=service.statements.log_vkey)

    @app.get(
        "/v1/proofs/consistency",
        response_model=ConsistencyOut,
        responses={**REFUSALS, 404: {"model": Problem, "description": "no checkpoint was signed at a size"}},
        tags=["verification"],
    )
    def consistency(
        request: Request,
        asker: Asker,
        old_size: Annotated[int, Query(alias="from", ge=1, description="a size a checkpoint was signed at")],
        new_size: Annotated[
            int | None, Query(alias="to", ge=1, description="a later signed size (default: the latest)")
        ] = None,
    ) -> ConsistencyOut:
        """Both signed checkpoints and the proof that the older tree is a prefix of the newer:
        whoever kept the older checkpoint proves the log only grew (`frtwatch verify
        --consistency OLD.note THIS.json`). Costs O(log n) stored nodes."""
        try:
            with service.reading() as store:
                document = consistency_document(store, old_size, new_size)
        except NotSigned as error:
            raise HTTPException(404, str(error)) from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        answered(request, 1)
        return ConsistencyOut.model_validate(document)

    def _page(request: Request, selection: Selection, limit: int, after: queries.Cursor | None) -> Page:
        with service.reading() as store:
            items, following = queries.page(store, selection, limit, after)
        answered(request, len(items))
        return Page(
            items=[Entry(**item) for item in items],
            next_cursor=following.encode() if following else None,
        )

    return app


def _record(request: Request, request_id: str, status: int) -> dict[str, Any]:
    """Who asked what, and what came of it; never the token itself."""
    asker: Principal | None = getattr(request.state, "principal", None)
    if asker is not None:
        who: dict[str, Any] = {"name": asker.name, "role": asker.role}
        who |= {
            k: v for k, v in (("jurisdiction", asker.jurisdiction), ("operator_id", asker.operator_id)) if v
        }
    else:
        who = {"name": None, "role": "anonymous"}
        if getattr(request.state, "unknown_token", None):
            who["token_sha256_prefix"] = request.state.unknown_token
    params = kept_params([*request.query_params.multi_items(), *request.path_params.items()])
    route = getattr(request.scope.get("route"), "path", None) or request.url.path[:MAX_PARAM_CHARS]
    return query_record(
        request_id, who, request.method, route, params, status, getattr(request.state, "rows", 0)
    )


def kept_params(items: list[tuple[str, Any]]) -> dict[str, str]:
    """The parameters a record keeps: the first MAX_PARAMS, each key and value cut short, and
    no more than MAX_QUERY_CHARS in all (a refused call may have sent more)."""
    kept: dict[str, str] = {}
    chars = 0
    for key, value in items[:MAX_PARAMS]:
        key, value = key[:MAX_PARAM_KEY_CHARS], str(value)[:MAX_PARAM_CHARS]
        chars += len(key) + len(value)
        if chars > MAX_QUERY_CHARS:
            break
        kept[key] = value
    return kept


def too_long(request: Request) -> JSONResponse | None:
    """The refusal of a call longer than the API takes, if it is one."""
    if len(request.url.path) > MAX_PATH_CHARS:
        return JSONResponse({"detail": f"the path is longer than {MAX_PATH_CHARS} characters"}, 414)
    if len(request.url.query) > MAX_QUERY_CHARS:
        return JSONResponse({"detail": f"the query string is longer than {MAX_QUERY_CHARS} characters"}, 414)
    if len(request.query_params.multi_items()) > MAX_PARAMS:
        return JSONResponse({"detail": f"more than {MAX_PARAMS} query parameters"}, 400)
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        return JSONResponse({"detail": "the API takes no request body"}, 413)
    return None


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
