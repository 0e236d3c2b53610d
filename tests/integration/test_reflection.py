"""Server reflection answers under grpc.reflection.v1 (what grpcurl and Postman ask first) and
grpc.reflection.v1alpha, on a real server over a real channel.

The client encodes with grpcio-reflection's v1alpha messages on both method paths: the v1 proto
declares the same messages with the same field numbers, so the bytes are what a v1 client sends.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.conftest import ServeFactory

METHODS = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]
SERVICES = {
    "anstoss.v1.DecisionService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


@pytest.fixture
def channel(serve: ServeFactory) -> Iterator[grpc.Channel]:
    running, _client = serve()
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield channel


def _ask(
    channel: grpc.Channel, method: str, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    call = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = list(call(iter(requests), timeout=10))
    assert len(replies) == len(requests)
    return replies


def _files(
    reply: reflection_pb2.ServerReflectionResponse,
) -> list[descriptor_pb2.FileDescriptorProto]:
    assert reply.WhichOneof("message_response") == "file_descriptor_response", reply
    return [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]


@pytest.mark.parametrize("method", METHODS)
def test_reflection_lists_every_service(channel: grpc.Channel, method: str) -> None:
    (reply,) = _ask(channel, method, reflection_pb2.ServerReflectionRequest(list_services=""))
    assert {s.name for s in reply.list_services_response.service} == SERVICES


@pytest.mark.parametrize("method", METHODS)
def test_reflection_gives_the_contract_file(channel: grpc.Channel, method: str) -> None:
    (reply,) = _ask(
        channel,
        method,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="anstoss.v1.DecisionService"),
    )
    files = _files(reply)
    (contract,) = [f for f in files if any(s.name == "DecisionService" for s in f.service)]
    assert contract.package == "anstoss.v1"
    (request,) = [m for m in contract.message_type if m.name == "DecideRequest"]
    assert "request_id" in {f.name for f in request.field}


@pytest.mark.parametrize("method", METHODS)
def test_every_listed_service_resolves_to_its_file(channel: grpc.Channel, method: str) -> None:
    # `grpcurl describe` asks for the file of each listed service; one unknown fails it all.
    names = sorted(SERVICES)
    replies = _ask(
        channel,
        method,
        *(reflection_pb2.ServerReflectionRequest(file_containing_symbol=n) for n in names),
    )
    for name, reply in zip(names, replies, strict=True):
        package, _, service = name.rpartition(".")
        declared = {(f.package, s.name) for f in _files(reply) for s in f.service}
        assert (package, service) in declared, name
