"""Write the feedback loop's data sets from a running escalation service.

    # preference pairs for fine-tuning: {"prompt","rejected","chosen"} per line, personal data masked
    python -m services.escalation.export --target 127.0.0.1:50054 --tenant demo feedback pairs.jsonl

    # agents' intent corrections as {"text","label"}: the input of triage's train CLI
    python -m services.escalation.export --target 127.0.0.1:50054 --tenant demo intents corrections.jsonl
    python -m services.triage.train --target 127.0.0.1:50052 --tenant demo corrections.jsonl

`--since 2026-11-01T00:00:00Z` exports only what came after. A feedback
export larger than one response is fetched page by page (resume_since).
Exit status: 0 written, 2 bad input, 1 the service refused or is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.escalation.v1 import escalation_pb2, escalation_pb2_grpc
from servicekit.clients import connect
from servicekit.errors import details_from_rpc_error


def _timestamp(value: str) -> Timestamp:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2026-11-01T00:00:00Z")
    stamp = Timestamp()
    stamp.FromDatetime(parsed)
    return stamp


async def export(target: str, tenant: str, kind: str, since: Timestamp | None) -> tuple[str, int]:
    async with connect(target, "aftercare.escalation.v1.EscalationService") as channel:
        stub = escalation_pb2_grpc.EscalationServiceStub(channel)
        if kind == "intents":
            request = escalation_pb2.ExportIntentCorrectionsRequest(tenant_id=tenant, since=since)
            response = await stub.ExportIntentCorrections(request)
            return response.jsonl, response.example_count
        lines: dict[str, None] = {}  # ordered and without the records a resumed page repeats
        while True:
            page = await stub.ExportFeedback(escalation_pb2.ExportFeedbackRequest(tenant_id=tenant, since=since))
            lines.update(dict.fromkeys(page.jsonl.splitlines()))
            if not page.HasField("resume_since"):
                break
            since = page.resume_since
        return "".join(f"{line}\n" for line in lines), len(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="escalation service host:port")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--since", default="", help="ISO 8601 time with a zone")
    parser.add_argument("kind", choices=["feedback", "intents"])
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    try:
        since = _timestamp(args.since) if args.since else None
    except ValueError as error:
        print(f"--since: {error}", file=sys.stderr)
        return 2
    try:
        jsonl, count = asyncio.run(export(args.target, args.tenant, args.kind, since))
    except grpc.RpcError as error:
        details = details_from_rpc_error(error)
        print(f"{details.code.name}: {details.message}", file=sys.stderr)
        return 2 if details.code == grpc.StatusCode.INVALID_ARGUMENT else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(jsonl, encoding="utf-8")
    print(f"{count} records written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
