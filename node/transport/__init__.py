"""mTLS gRPC transport: credentials, the thin servicer, peer clients and the streaming Channel."""
