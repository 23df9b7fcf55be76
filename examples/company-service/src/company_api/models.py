"""What a company is, and what clients may send."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class CompanyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    website: HttpUrl | None = None


class Company(CompanyIn):
    id: str
    created_at: str
    updated_at: str
