"""Call any aftercare service from a shell, as grpcurl would, with nothing but the project.

    python -m servicekit.call ADDRESS                        # the services it serves
    python -m servicekit.call ADDRESS SERVICE                # their methods
    python -m servicekit.call -d '{"tenant_id": "demo"}' ADDRESS SERVICE/METHOD

Every server enables reflection, so no proto file is needed: the request is JSON with the
proto's field names, parsed against the descriptors the server sends; the answer is printed
as JSON (one object per message of a server stream). A client stream takes a JSON array,
one element per message. With MESH_SECRET set, the call carries a mesh token as a
service's would (set OTEL_SERVICE_NAME to name the caller). A failed call prints its status,
message and details (a BadRequest's field violations...) on standard error and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2  # noqa: F401  (registers the detail types for printing)
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status

from servicekit import meshauth
from servicekit.clients import MESH

# Calls to a method that servicekit.clients.MESH does not list get this long.
DEFAULT_TIMEOUT_S = 30.0


def _to_json(message: Message, pool: descriptor_pool.DescriptorPool | None = None) -> str:
    return str(
        json_format.MessageToJson(
            message, preserving_proto_field_name=True, indent=2, ensure_ascii=False, descriptor_pool=pool
        )
    )


def _requests(data: str, method: MethodDescriptor, pool: descriptor_pool.DescriptorPool) -> list[Message]:
    request_class = message_factory.GetMessageClass(method.input_type)
    documents = json.loads(data or "{}")
    if not isinstance(documents, list):
        documents = [documents]
    if len(documents) != 1 and not method.client_streaming:
        raise ValueError(f"{method.full_name} takes one request message, not {len(documents)}")
    return [json_format.ParseDict(document, request_class(), descriptor_pool=pool) for document in documents]


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _invoke(
    channel: grpc.Channel, method: MethodDescriptor, requests: list[Message], timeout: float, metadata: Any
) -> Iterator[Message]:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_class = message_factory.GetMessageClass(method.output_type)
    kinds: dict[tuple[bool, bool], Callable[..., Any]] = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }
    callable_ = kinds[method.client_streaming, method.server_streaming](
        path, request_serializer=_serialize, response_deserializer=response_class.FromString
    )
    argument: Any = iter(requests) if method.client_streaming else requests[0]
    answer = callable_(argument, timeout=timeout, metadata=metadata)
    if method.server_streaming:
        yield from answer
    else:
        yield answer


def _print_error(error: grpc.RpcError) -> None:
    call = cast(grpc.Call, error)  # a failed call's error is also the call, with its status
    print(f"ERROR: {call.code().name}: {call.details()}", file=sys.stderr)
    status = rpc_status.from_call(call)
    for detail in status.details if status is not None else ():
        try:
            print(json_format.MessageToJson(detail, preserving_proto_field_name=True, indent=2), file=sys.stderr)
        except TypeError:  # a detail type this process does not know
            print(detail.type_url, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servicekit.call", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-d", "--data", default="{}", help="the request as JSON ('-': read it from standard input)")
    parser.add_argument("--timeout", type=float, help="seconds (default: the service's deadline in the mesh)")
    parser.add_argument("address", help="host:port, e.g. 127.0.0.1:50051")
    parser.add_argument("target", nargs="?", help="SERVICE to list its methods, SERVICE/METHOD to call one")
    args = parser.parse_args(argv)

    with grpc.insecure_channel(args.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        try:
            if not args.target:
                print("\n".join(sorted(database.get_services())))
                return 0
            service_name, _, method_name = args.target.partition("/")
            service = pool.FindServiceByName(service_name)
            if not method_name:
                print("\n".join(f"{service.full_name}/{m.name}" for m in service.methods))
                return 0
            method = service.methods_by_name.get(method_name)
            if method is None:
                print(f"ERROR: {service.full_name} has no method {method_name!r}", file=sys.stderr)
                return 2
            requests = _requests(sys.stdin.read() if args.data == "-" else args.data, method, pool)
            tokens = meshauth.token_source()
            metadata = [tokens.header()] if tokens is not None else None
            full_method = f"{service.full_name}/{method.name}"
            timeout = args.timeout or MESH.get(full_method, MESH.get(service.full_name, DEFAULT_TIMEOUT_S))
            for response in _invoke(channel, method, requests, timeout, metadata):
                print(_to_json(response, pool))
            return 0
        except grpc.RpcError as error:
            _print_error(error)
            return 1
        except KeyError as error:  # the server does not know the service
            print(f"ERROR: not served at {args.address}: {error}", file=sys.stderr)
            return 2
        except (ValueError, json_format.ParseError) as error:
            print(f"ERROR: bad request: {error}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    raise SystemExit(main())
