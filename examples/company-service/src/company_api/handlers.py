"""The four Lambda entry points: create, read, update, delete. Each function's template entry names one of them
(Handler: company_api.handlers.create ...), so each verb is deployed, canaried and rolled back on its own."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from company_api import repository, webhook
from company_api.models import Company, CompanyIn

logger = Logger()
app = APIGatewayRestResolver()


def _body() -> CompanyIn:
    try:
        return CompanyIn.model_validate(app.current_event.json_body or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadRequestError(problems) from exc
    except ValueError as exc:  # body is not JSON
        raise BadRequestError("body must be a JSON object") from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@app.post("/companies")
def create_company() -> Response[dict[str, Any]]:
    data = _body()
    subscriber = webhook.subscriber()  # before the write: a stage without its webhook secret stores nothing
    now = _now()
    company = Company(id=str(uuid.uuid4()), created_at=now, updated_at=now, **data.model_dump())
    repository.put_new(company)
    logger.info("company created", extra={"company_id": company.id})
    delivery = webhook.deliver(subscriber, "company.created", company.model_dump(mode="json"))
    if delivery.ok:
        logger.info("webhook delivered", extra=asdict(delivery))
    else:
        logger.warning("webhook delivery failed", extra=asdict(delivery))
    return Response(status_code=201, content_type="application/json", body=company.model_dump(mode="json"))


@app.get("/companies/<company_id>")
def read_company(company_id: str) -> dict[str, Any]:
    company = repository.get(company_id)
    if company is None:
        raise NotFoundError(f"company {company_id} not found")
    return company.model_dump(mode="json")


@app.put("/companies/<company_id>")
def update_company(company_id: str) -> dict[str, Any]:
    data = _body()
    existing = repository.get(company_id)
    if existing is None:
        raise NotFoundError(f"company {company_id} not found")
    company = Company(id=company_id, created_at=existing.created_at, updated_at=_now(), **data.model_dump())
    if not repository.replace_existing(company):
        raise NotFoundError(f"company {company_id} not found")
    return company.model_dump(mode="json")


@app.delete("/companies/<company_id>")
def delete_company(company_id: str) -> Response[str]:
    if not repository.delete_existing(company_id):
        raise NotFoundError(f"company {company_id} not found")
    return Response(status_code=204, content_type="application/json", body="")


@logger.inject_lambda_context
def _resolve(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


# One resolver, four deployables: API Gateway routes each path+method to its own function.
create = _resolve
read = _resolve
update = _resolve
delete = _resolve
