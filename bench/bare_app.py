"""The baseline for bench.intake_only: FastAPI's own cost for intake's POST /v1/reports, no I/O.

Same body validation shape and answer shape as intake, served with the same uvicorn settings
as `gridcall serve` (one worker, uvicorn's default loop and HTTP parser, no access log).
Run: python -m bench.bare_app --port 8001
"""

import argparse
import secrets
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, status
from pydantic import BaseModel


class LocationIn(BaseModel):
    lat: float | None = None
    lon: float | None = None


class ReportIn(BaseModel):
    category: str
    description: str
    location: LocationIn
    insist: bool = False


app = FastAPI(title="bare")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/reports", status_code=status.HTTP_202_ACCEPTED)
async def submit_report(report: ReportIn) -> dict[str, Any]:
    return {"case_id": str(uuid.uuid4()), "tracking_token": secrets.token_urlsafe(24), "status": "received"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="info", access_log=False)
