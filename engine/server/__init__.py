"""The gRPC adapter: validation, conversion, the servicer, health, reflection, the client."""
