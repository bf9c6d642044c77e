"""Train a tenant's intent model from a labelled file (CSV or JSONL with `text`, `label`).

    # through a running triage service (StartRetrain, then GetOperation until done,
    # printing the progress; Ctrl+C cancels the operation)
    python -m services.triage.train --target 127.0.0.1:50052 --tenant acme examples.csv

    # offline, into a data directory the service will serve from
    # (models land in the triage database: <model-dir>/triage.db, or DATABASE_URL's; same promotion rule)
    python -m services.triage.train --model-dir var --tenant acme examples.jsonl

Problems in the file are reported with their line (`examples.csv:14: label is empty`),
and so are the service's field violations (`examples[12].label` -> the line it came from).
Exit status: 0 promoted, 3 trained but not promoted, 2 bad input, 1 other failure
(another retrain of the tenant running, cancelled, failed, or not done within --timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXIT_NOT_PROMOTED = 3
EXIT_BAD_INPUT = 2


class FileProblems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Examples:
    texts: list[str]
    labels: list[str]
    lines: list[int]  # line number in the file of each example


def read_examples(path: Path, text_col: str = "text", label_col: str = "label") -> Examples:
    """Read labelled examples; raises FileProblems listing every bad line."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise FileProblems([f"{path}: cannot read: {error}"]) from None
    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    problems: list[str] = []

    def add(line: int, text: object, label: object) -> None:
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{path}:{line}: {text_col} is empty or not a string")
        if not isinstance(label, str) or not label.strip():
            problems.append(f"{path}:{line}: {label_col} is empty or not a string")
        if isinstance(text, str) and isinstance(label, str) and text.strip() and label.strip():
            texts.append(text)
            labels.append(label.strip())
            lines.append(line)

    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                problems.append(f"{path}:{number}: not valid JSON: {error.msg}")
                continue
            if not isinstance(row, dict):
                problems.append(f"{path}:{number}: expected a JSON object")
                continue
            missing = [col for col in (text_col, label_col) if col not in row]
            if missing:
                problems.append(f"{path}:{number}: missing {', '.join(repr(m) for m in missing)}")
                continue
            add(number, row[text_col], row[label_col])
    else:
        reader = csv.reader(raw.splitlines())
        try:
            header = next(reader)
        except StopIteration:
            expected = f"expected a header with {text_col!r} and {label_col!r}"
            raise FileProblems([f"{path}:1: empty file; {expected}"]) from None
        missing = [col for col in (text_col, label_col) if col not in header]
        if missing:
            raise FileProblems([f"{path}:1: header lacks {', '.join(repr(m) for m in missing)} (has {header})"])
        t_index, l_index = header.index(text_col), header.index(label_col)
        for row in reader:
            number = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                problems.append(f"{path}:{number}: {len(row)} fields, header has {len(header)}")
                continue
            add(number, row[t_index], row[l_index])
    if problems:
        raise FileProblems(problems)
    if not texts:
        raise FileProblems([f"{path}: no examples"])
    return Examples(texts, labels, lines)


_FIELD = re.compile(r"^examples\[(\d+)\]")


def locate(path: Path, examples: Examples, field: str, description: str) -> str:
    """A service field violation as a file line when it names a row."""
    match = _FIELD.match(field)
    if match and int(match.group(1)) < len(examples.lines):
        return f"{path}:{examples.lines[int(match.group(1))]}: {field}: {description}"
    return f"{path}: {field}: {description}"


# Seconds between two GetOperation calls while a remote retrain runs.
POLL_S = 1.0


async def _remote(args: argparse.Namespace, examples: Examples) -> int:
    import grpc

    from aftercare.operations.v1 import operations_pb2, operations_pb2_grpc
    from aftercare.triage.v1 import triage_pb2, triage_pb2_grpc
    from servicekit.errors import details_from_rpc_error

    async with grpc.aio.insecure_channel(
        args.target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        stub = triage_pb2_grpc.TriageServiceStub(channel)
        operations = operations_pb2_grpc.OperationsServiceStub(channel)
        try:
            started = await stub.StartRetrain(
                triage_pb2.StartRetrainRequest(
                    tenant_id=args.tenant,
                    examples=[
                        triage_pb2.LabeledExample(text=t, label=lab)
                        for t, lab in zip(examples.texts, examples.labels, strict=True)
                    ],
                ),
                timeout=60,
            )
        except grpc.aio.AioRpcError as error:
            details = details_from_rpc_error(error)
            if details.field_violations:
                for field, description in details.field_violations:
                    print(locate(args.file, examples, field, description), file=sys.stderr)
                return EXIT_BAD_INPUT
            print(f"Retrain refused: {details.code.name}: {details.message}", file=sys.stderr)
            return 1
        name = started.operation.name
        print(f"operation {name}: {len(examples.texts)} examples", flush=True)
        operation = started.operation
        deadline = time.monotonic() + args.timeout
        last = ""
        try:
            while not operation.done:
                metadata = triage_pb2.RetrainMetadata()
                operation.metadata.Unpack(metadata)
                line = f"{metadata.progress_percent:3d}% {metadata.step}"
                if line != last:
                    print(line, flush=True)
                    last = line
                if time.monotonic() > deadline:
                    print(f"not done after {args.timeout:.0f}s; it goes on: poll {name}", file=sys.stderr)
                    return 1
                await asyncio.sleep(POLL_S)
                request = operations_pb2.GetOperationRequest(name=name)
                operation = (await operations.GetOperation(request, timeout=30)).operation
        except (KeyboardInterrupt, asyncio.CancelledError):
            await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=name), timeout=30)
            print(f"cancel requested for {name}", file=sys.stderr)
            return 1
        except grpc.aio.AioRpcError as error:
            print(f"cannot follow {name}: {details_from_rpc_error(error).message}", file=sys.stderr)
            return 1
    if operation.WhichOneof("result") == "error":
        print(f"Retrain {name} ended: code {operation.error.code}: {operation.error.message}", file=sys.stderr)
        return 1
    response = triage_pb2.RetrainResponse()
    operation.response.Unpack(response)
    return _report(response.model_version, response.promoted, response.validation_accuracy, response.validation_ece)


def _offline(args: argparse.Namespace, examples: Examples) -> int:
    from servicekit.ids import ID_RULE, MAX_ID_CHARS
    from services.triage.app import intent_engine
    from services.triage.intent_store import valid_tenant
    from services.triage.intent_training import example_violations
    from services.triage.settings import TriageSettings

    if not valid_tenant(args.tenant):
        print(f"--tenant {args.tenant!r}: 1-{MAX_ID_CHARS} {ID_RULE}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # Offline training calls no backend.
    settings = TriageSettings(data_dir=args.model_dir, retrieval_addr="")
    engine = intent_engine(settings)
    problems = example_violations(examples.texts, examples.labels, min_per_label=engine.config.min_examples_per_label)
    if problems:
        for field, description in problems:
            print(locate(args.file, examples, field, description), file=sys.stderr)
        return EXIT_BAD_INPUT

    def progress(percent: int, step: str) -> None:
        print(f"{percent:3d}% {step}", flush=True)

    outcome = asyncio.run(engine.retrain(args.tenant, examples.texts, examples.labels, progress=progress))
    return _report(outcome.version, outcome.promoted, outcome.accuracy, outcome.ece)


def _report(version: str, promoted: bool, accuracy: float, ece: float) -> int:
    state = "promoted: it serves now" if promoted else "NOT promoted: it validated worse than the serving version"
    print(f"model {version}: validation accuracy {accuracy:.4f}, ECE {ece:.4f}; {state}")
    return 0 if promoted else EXIT_NOT_PROMOTED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.triage.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", help="HOST:PORT of a running triage service")
    where.add_argument("--model-dir", type=Path, help="train offline into this data directory")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--label-col", default="label")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the retrain to end")
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    try:
        examples = read_examples(args.file, args.text_col, args.label_col)
    except FileProblems as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.target:
        return asyncio.run(_remote(args, examples))
    return _offline(args, examples)


if __name__ == "__main__":
    sys.exit(main())
