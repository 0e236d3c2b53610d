"""gRPC server reflection under both `grpc.reflection.v1` and `grpc.reflection.v1alpha`.

Newer tools (grpcurl, Postman) ask for v1 first; grpcio-reflection ships only v1alpha. The two
protos declare the same messages with the same field numbers (only the package differs), so
their bytes on the wire are the same: one v1alpha servicer answers both method paths. The v1
file descriptor (v1alpha's, renamed) is added to the default descriptor pool, so every service
that reflection lists also resolves to a file (`grpcurl describe` asks for each of them).
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
REFLECTION_SERVICES = (V1_SERVICE, V1ALPHA_SERVICE)


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's file descriptor with the package (and the type names that carry it) renamed."""
    alpha = reflection_pb2.DESCRIPTOR
    proto = descriptor_pb2.FileDescriptorProto()
    alpha.CopyToProto(proto)
    old, new = f".{alpha.package}.", f".{V1_PACKAGE}."
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    # The options of the canonical v1 file (grpc-proto); v1alpha's say `deprecated`.
    proto.options.Clear()
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    proto.options.java_multiple_files = True
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    for message in proto.message_type:
        for f in message.field:
            if f.type_name.startswith(old):
                f.type_name = new + f.type_name[len(old) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    return proto


def _register_v1_descriptor() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(V1_SERVICE)  # registered already (a second server, say)
    except KeyError:
        pool.Add(_v1_file())


def enable_reflection(server: grpc.Server, service_names: Iterable[str]) -> None:
    """Serve reflection for `service_names` (plus both reflection services) on `server`."""
    _register_v1_descriptor()
    servicer = reflection.ReflectionServicer((*service_names, *REFLECTION_SERVICES))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
