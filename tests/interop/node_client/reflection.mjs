// Server reflection's ServerReflectionInfo, described here by hand for proto-loader: only the
// messages and fields this client uses, with the field numbers of the public reflection protocol.
// grpc.reflection.v1alpha and grpc.reflection.v1 carry the same messages under two package names,
// so one description serves both.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const VERSIONS = ['v1alpha', 'v1'];

function descriptor() {
  return {
    nested: {
      ServerReflection: {
        methods: {
          ServerReflectionInfo: {
            requestType: 'ServerReflectionRequest',
            requestStream: true,
            responseType: 'ServerReflectionResponse',
            responseStream: true,
          },
        },
      },
      ServerReflectionRequest: {
        oneofs: { message_request: { oneof: ['file_containing_symbol', 'list_services'] } },
        fields: {
          host: { type: 'string', id: 1 },
          file_containing_symbol: { type: 'string', id: 4 },
          list_services: { type: 'string', id: 7 },
        },
      },
      ServerReflectionResponse: {
        oneofs: {
          message_response: {
            oneof: ['file_descriptor_response', 'list_services_response', 'error_response'],
          },
        },
        fields: {
          valid_host: { type: 'string', id: 1 },
          original_request: { type: 'ServerReflectionRequest', id: 2 },
          file_descriptor_response: { type: 'FileDescriptorResponse', id: 4 },
          list_services_response: { type: 'ListServiceResponse', id: 6 },
          error_response: { type: 'ErrorResponse', id: 7 },
        },
      },
      FileDescriptorResponse: {
        fields: { file_descriptor_proto: { rule: 'repeated', type: 'bytes', id: 1 } },
      },
      ListServiceResponse: {
        fields: { service: { rule: 'repeated', type: 'ServiceResponse', id: 1 } },
      },
      ServiceResponse: { fields: { name: { type: 'string', id: 1 } } },
      ErrorResponse: {
        fields: {
          error_code: { type: 'int32', id: 1 },
          error_message: { type: 'string', id: 2 },
        },
      },
    },
  };
}

/** A client constructor for grpc.reflection.<version>.ServerReflection. */
export function reflectionClient(version) {
  const json = {
    nested: { grpc: { nested: { reflection: { nested: { [version]: descriptor() } } } } },
  };
  const definition = protoLoader.fromJSON(json, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).grpc.reflection[version].ServerReflection;
}

/**
 * Ask one reflection version for its service list over one stream.
 * Resolves to {services: [...]} or {code, details} when the call failed (e.g. UNIMPLEMENTED).
 */
export function listServices(address, version, deadlineMs) {
  const Client = reflectionClient(version);
  const client = new Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    let services = null;
    const call = client.ServerReflectionInfo({ deadline: Date.now() + deadlineMs });
    call.on('data', (reply) => {
      if (reply.message_response === 'list_services_response') {
        services = reply.list_services_response.service.map((s) => s.name);
      } else if (reply.message_response === 'error_response') {
        services = { error: reply.error_response };
      }
      call.end();
    });
    call.on('error', () => {}); // the final status below says everything
    call.on('status', (status) => {
      client.close();
      if (status.code !== grpc.status.OK) resolve({ code: status.code, details: status.details });
      else if (services === null) resolve({ code: null, details: 'stream ended without a reply' });
      else if (services.error) resolve({ code: null, details: JSON.stringify(services.error) });
      else resolve({ services });
    });
    call.write({ host: '', list_services: '*' });
  });
}
