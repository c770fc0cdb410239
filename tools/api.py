"""The read-only HTTP audit API behind `ledgerctl serve` (FastAPI), shaped after dYdX's
comlink indexer API: versioned GET routes, `limit` and `page` query parameters,
list responses with `pageSize`, `totalResults` and `offset`, and 400 errors as
`{"errors": [{"param", "location", "msg", "value"}]}` naming the parameter.

Every route answers with the same JSON as the CLI's `--json` for the same
question (it calls the same `Auditor` methods and `projections.catalog`
shapes); list routes page those rows. Only GET exists: the server never
writes the chain. Before a request it folds blocks appended since the last
one into the read models (a derived cache, as `ledgerctl audit` does), and
one lock serializes requests over the single LMDB reader.

| route | CLI |
|---|---|
| `/v1/height` | `info --json` (head_height, head_time, head_seq, head_hash) |
| `/v1/accounts/{id}` | `audit account ID --json` |
| `/v1/fills` | `audit fills --json` |
| `/v1/funding/{market}` | `audit funding --market M --json` |
| `/v1/liquidations` | `audit liquidations --json` |
| `/v1/events` | `audit events --json` |
| `/v1/branches` | `branches --json` |
| `/v1/journal` | `journal --json` |
| `/v1/snapshots` | `snapshots --json` |
| `/metrics` | Prometheus text format (`tools/metrics.py`) |
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ledger.errors import CommandInvalid, LedgerError, NotFound
from projections.audit import Auditor
from projections.catalog import branches_json, head_json, journal_json, snapshots_json
from tools.metrics import Metrics

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: the largest integer a query parameter takes (heights, ids): u64 keys on disk
MAX_INT = 2**63 - 1

Height = Annotated[int | None, Query(ge=0, le=MAX_INT)]
Branch = Annotated[int | None, Query(ge=0, le=2**32 - 1, description="Archived branch id.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page.")]
Page = Annotated[int, Query(ge=1, le=10**9, description="Page number, from 1.")]
Ident = Annotated[str | None, Query(min_length=1, max_length=255)]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "A bad parameter, named in `errors[].param`."},
    404: {"description": "Nothing there (an unknown account, or a branch cut off)."},
}


def error(status: int, msg: str, param: str | None = None, location: str = "query",
          value: Any = None) -> JSONResponse:
    """A comlink-shaped error response."""
    return JSONResponse({"errors": [{"param": param, "location": location, "msg": msg,
                                     "value": value}]}, status_code=status)


_NAMED = {"market": "market", "event type": "type", "account": "account",
          "branch": "branch"}


def _param_of(message: str) -> str | None:
    """The parameter a CLI-worded message names (`--at-height` -> `at_height`,
    `unknown market 'X'` -> `market`)."""
    m = re.search(r"--([a-z][a-z-]*)", message)
    if m:
        return m.group(1).replace("-", "_")
    m = re.search(r"(?:unknown|no archived) (market|event type|account|branch)", message)
    return _NAMED[m.group(1)] if m else None


def page_of(rows: Sequence[T], limit: int, page: int) -> tuple[list[T], dict[str, int]]:
    """One page of rows and comlink's pagination fields."""
    offset = (page - 1) * limit
    return list(rows[offset:offset + limit]), {"pageSize": limit, "totalResults": len(rows),
                                               "offset": offset}


def create_app(au: Auditor, *, metrics: Metrics | None = None) -> FastAPI:
    """The API over one open `Auditor` (which the caller closes)."""
    app = FastAPI(title="perpledger audit API", version="1",
                  description="Read-only queries of a perpledger ledger, shaped after dYdX's "
                              "comlink. Amounts are integers in fixed-point units (`_qq` quote "
                              "quanta of 1e-6 USDC, `_bq` base quanta, `_st` subticks).")
    lock = threading.Lock()
    seen = {"height": -2}
    mx = metrics or Metrics(au)

    def ask(fn: Callable[[], T]) -> T:
        with lock:
            head = au.store.head.height
            if head != seen["height"]:
                au.catch_up()
                seen["height"] = head
            return fn()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errs = []
        for e in exc.errors():
            loc = list(e.get("loc", ()))
            errs.append({"param": str(loc[-1]) if loc else None,
                         "location": str(loc[0]) if loc else None,
                         "msg": e.get("msg", "invalid"), "value": _plain(e.get("input"))})
        return JSONResponse({"errors": errs}, status_code=400)

    @app.exception_handler(CommandInvalid)
    async def _refused(_req: Request, exc: CommandInvalid) -> JSONResponse:
        return error(400, str(exc), _param_of(str(exc)))

    @app.exception_handler(NotFound)
    async def _missing(_req: Request, exc: NotFound) -> JSONResponse:
        return error(404, str(exc), None, "path")

    @app.exception_handler(LedgerError)
    async def _ledger(_req: Request, exc: LedgerError) -> JSONResponse:
        return error(500 if exc.exit_code != 3 else 409, str(exc))

    @app.middleware("http")
    async def _count(request: Request, call_next: Any) -> Any:
        with mx.request_timer(request.url.path) as done:
            response = await call_next(request)
            done(response.status_code)
        return response

    @app.get("/v1/height", responses=ERRORS)
    def height() -> dict[str, Any]:
        """The head block: height, block time, last seq and hash."""
        return ask(lambda: head_json(au.store))

    @app.get("/v1/accounts/{account_id}", responses=ERRORS)
    def account(account_id: Annotated[str, Path(min_length=1, max_length=255)],
                at_height: Height = None, from_height: Height = None,
                to_height: Height = None, branch: Branch = None,
                limit: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None
                ) -> dict[str, Any]:
        """An account at a height (balance, positions, orders, margin) and its statement
        lines in a height range (`limit`: the last N lines)."""
        return ask(lambda: au.account(account_id, at_height=at_height, from_height=from_height,
                                      to_height=to_height, branch=branch, limit=limit))

    @app.get("/v1/fills", responses=ERRORS)
    def fills(account: Ident = None, market: Ident = None, from_height: Height = None,
              to_height: Height = None, branch: Branch = None, limit: Limit = DEFAULT_LIMIT,
              page: Page = 1) -> dict[str, Any]:
        """Fills, oldest first, with fees and realized P&L per side."""
        rows = ask(lambda: au.fills(account=account, market=market, from_height=from_height,
                                    to_height=to_height, branch=branch))
        got, meta = page_of(rows, limit, page)
        return {"fills": got, **meta}

    @app.get("/v1/funding/{market}", responses=ERRORS)
    def funding(market: Annotated[str, Path(min_length=1, max_length=255)],
                from_height: Height = None, to_height: Height = None, branch: Branch = None,
                limit: Limit = DEFAULT_LIMIT, page: Page = 1) -> dict[str, Any]:
        """A market's funding ticks (paged) and the settlements they moved."""
        doc = ask(lambda: au.funding(market, from_height=from_height, to_height=to_height,
                                     branch=branch))
        doc["ticks"], meta = page_of(doc["ticks"], limit, page)
        return {**doc, **meta}

    @app.get("/v1/liquidations", responses=ERRORS)
    def liquidations(account: Ident = None, market: Ident = None, from_height: Height = None,
                     to_height: Height = None, branch: Branch = None,
                     limit: Limit = DEFAULT_LIMIT, page: Page = 1) -> dict[str, Any]:
        """The liquidation register with fees, deficits and their deleveragings."""
        rows = ask(lambda: au.liquidations(account=account, market=market,
                                           from_height=from_height, to_height=to_height,
                                           branch=branch))
        got, meta = page_of(rows, limit, page)
        return {"liquidations": got, **meta}

    @app.get("/v1/events", responses=ERRORS)
    def events(account: Ident = None, market: Ident = None,
               type: Annotated[str | None, Query(min_length=1, max_length=64,  # noqa: A002
                                                 description="Event type name.")] = None,
               from_height: Height = None, to_height: Height = None, branch: Branch = None,
               limit: Limit = DEFAULT_LIMIT, page: Page = 1) -> dict[str, Any]:
        """Events by account, market and type in a height range (index-driven)."""
        rows = ask(lambda: au.events(account=account, market=market, type_name=type,
                                     from_height=from_height, to_height=to_height,
                                     branch=branch))
        got, meta = page_of(rows, limit, page)
        return {"events": got, **meta}

    @app.get("/v1/branches", responses=ERRORS)
    def branches() -> dict[str, Any]:
        """Archived branches (rolled-back suffixes)."""
        return {"branches": ask(lambda: branches_json(au.store))}

    @app.get("/v1/journal", responses=ERRORS)
    def journal(limit: Limit = DEFAULT_LIMIT, page: Page = 1) -> dict[str, Any]:
        """Operator actions: who, why, when, heights and hashes."""
        got, meta = page_of(ask(lambda: journal_json(au.store)), limit, page)
        return {"journal": got, **meta}

    @app.get("/v1/snapshots", responses=ERRORS)
    def snapshots(limit: Limit = DEFAULT_LIMIT, page: Page = 1) -> dict[str, Any]:
        """Snapshots: height, state hash, size, block time."""
        got, meta = page_of(ask(lambda: snapshots_json(au.store)), limit, page)
        return {"snapshots": got, **meta}

    @app.get("/metrics", include_in_schema=False)
    def metrics_text() -> Response:
        body, content_type = ask(mx.render)
        return Response(body, media_type=content_type)

    return app


def _plain(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)
