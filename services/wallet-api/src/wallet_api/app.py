"""The application factory (``gunicorn 'wallet_api:create_app()'``)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from wallet_api.auth import ApiKeys
from wallet_api.config import Settings
from wallet_api.context import EXTENSION, WalletContext
from wallet_api.domain.ledger import DomainRefusal
from wallet_api.observability import configure_logging, init_metrics, init_request_logging
from wallet_api.problems import (
    FieldError,
    ProblemError,
    problem,
    problem_response,
    validation_problem,
)
from wallet_api.redis_clients import connect
from wallet_api.routes import ALL_BLUEPRINTS
from wallet_api.service import WalletService
from wallet_api.store import (
    ContentionExhausted,
    OutcomeUnknown,
    RetryPolicy,
    StorageFull,
    StoreUnavailable,
    WalletStore,
    WalletUnavailable,
)

log = logging.getLogger("wallet_api")


def create_app(
    settings: Settings | None = None, *, redis_client: redis.Redis | None = None
) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # No 308 from /wallets//x/deposit to /wallets/x/deposit: an id that is not
    # valid must not be redirected to one that is (and so move someone's money).
    app.url_map.merge_slashes = False

    if redis_client is None:
        clients = connect(settings)  # REDIS_URL, or through Sentinel
        client, health_client = clients.main, clients.health
    else:
        client, health_client = redis_client, redis_client
    metrics = init_metrics(app)
    store = WalletStore(
        client,
        idempotency_ttl=settings.idempotency_ttl,
        retry=RetryPolicy(max_attempts=settings.watch_max_attempts),
        metrics=metrics,
        health_client=health_client,
        min_replicas_ack=settings.min_replicas_ack,
        wait_timeout_ms=settings.redis_wait_timeout_ms,
    )
    app.extensions[EXTENSION] = WalletContext(
        settings=settings,
        store=store,
        service=WalletService(store, metrics, commit_shards=settings.commit_shards),
        api_keys=ApiKeys(settings.api_keys),
    )
    init_request_logging(app, settings.replica_id)
    for blueprint in ALL_BLUEPRINTS:
        app.register_blueprint(blueprint)
    _register_error_handlers(app)
    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ProblemError)
    def _problem(exc: ProblemError) -> Response:
        return problem_response(exc.body, exc.headers)

    @app.errorhandler(FieldError)
    def _field(exc: FieldError) -> Response:
        return problem_response(validation_problem(exc.errors))

    @app.errorhandler(DomainRefusal)
    def _refusal(exc: DomainRefusal) -> Response:
        return problem_response(problem(exc.status, exc.slug, exc.title, exc.detail))

    # Redis trouble: 503 with Retry-After; only OutcomeUnknown may have changed anything.
    # Every Redis error a request can meet is one of these (store.py types them):
    # none becomes a 500. The types are listed in the spec (models.UNAVAILABLE_TYPES).
    retry_later: dict[type[Exception], tuple[int, str, dict[str, Any]]] = {
        StoreUnavailable: (logging.WARNING, "1", problem(
            503, "redis-unavailable", "Service unavailable",
            "the balance store is unreachable or cannot take writes right now (e.g. during "
            "a failover); nothing was changed, retry later")),
        StorageFull: (logging.ERROR, "5", problem(
            503, "storage-full", "Storage full",
            "the balance store is out of memory or disk and refuses writes; nothing was "
            "changed, retry later (reads still work)")),
        ContentionExhausted: (logging.WARNING, "1", problem(
            503, "contention", "Too much contention",
            "the wallet is too busy right now; nothing was changed, retry later")),
        OutcomeUnknown: (logging.ERROR, "1", problem(
            503, "outcome-unknown", "Outcome unknown",
            "the balance store failed while committing, or too few replicas confirmed "
            "the commit; the operation may have been applied. Retry with the same "
            "Idempotency-Key to get its result (or read the wallet's transactions before "
            "sending it again without one)")),
        WalletUnavailable: (logging.ERROR, "30", problem(
            503, "wallet-unavailable", "Wallet unavailable",
            "this wallet's stored data cannot be read; nothing was changed. Operators "
            "have been alerted")),
    }  # fmt: skip

    def _retry_later(exc: Exception) -> Response:
        level, retry_after, body = retry_later[type(exc)]
        log.log(level, body["title"], extra={"error": str(exc), "problem": body["type"]})
        return problem_response(body, {"Retry-After": retry_after})

    for exc_type in retry_later:
        app.register_error_handler(exc_type, _retry_later)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        valid_methods = getattr(exc, "valid_methods", None)  # set on 405
        headers = {"Allow": ", ".join(valid_methods)} if valid_methods else {}
        return problem_response(
            problem(status, "about:blank", exc.name, exc.description or exc.name), headers
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem_response(
            problem(500, "about:blank", "Internal Server Error", "an unexpected error occurred")
        )
