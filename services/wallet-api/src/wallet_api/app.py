"""The application factory (``gunicorn 'wallet_api:create_app()'``)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry
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
from wallet_api.routes import ALL_BLUEPRINTS
from wallet_api.service import WalletService
from wallet_api.store import (
    ContentionExhausted,
    OutcomeUnknown,
    RetryPolicy,
    StoreUnavailable,
    WalletStore,
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

    client = redis_client or redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
        # redis-py's default retries back off for seconds; our store retries
        # itself and must answer 503 quickly when Redis is down.
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), 1),
    )
    health_client = None
    if redis_client is None:
        health_client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=min(settings.redis_timeout, 0.5),
            socket_connect_timeout=min(settings.redis_timeout, 0.5),
            retry=Retry(NoBackoff(), 0),
        )
    metrics = init_metrics(app)
    store = WalletStore(
        client,
        idempotency_ttl=settings.idempotency_ttl,
        retry=RetryPolicy(max_attempts=settings.watch_max_attempts),
        metrics=metrics,
        health_client=health_client,
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
    retry_later: dict[type[Exception], tuple[int, dict[str, Any]]] = {
        StoreUnavailable: (logging.WARNING, problem(
            503, "redis-unavailable", "Service unavailable",
            "the balance store is unreachable; nothing was changed, retry later")),
        ContentionExhausted: (logging.WARNING, problem(
            503, "contention", "Too much contention",
            "the wallet is too busy right now; nothing was changed, retry later")),
        OutcomeUnknown: (logging.ERROR, problem(
            503, "outcome-unknown", "Outcome unknown",
            "the balance store became unreachable while committing; the operation may "
            "have been applied. Retry with the same Idempotency-Key to get its result "
            "(or read the wallet's transactions before sending it again without one)")),
    }  # fmt: skip

    def _retry_later(exc: Exception) -> Response:
        level, body = retry_later[type(exc)]
        log.log(level, body["title"], extra={"error": str(exc), "problem": body["type"]})
        return problem_response(body, {"Retry-After": "1"})

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
