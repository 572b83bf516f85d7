"""mTLS credentials and channel options for node-to-node gRPC."""

from __future__ import annotations

import grpc

from node.config import NodeConfig
from node.transport.stream_channel import CHUNK_BYTES

#: Frames are at most one chunk plus headers; allow 4x headroom, no more.
MAX_FRAME_BYTES = 4 * CHUNK_BYTES

#: Keepalive pings find a silently vanished peer within ~20 s.
KEEPALIVE_MS = 10_000

COMMON_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_FRAME_BYTES),
    ("grpc.max_receive_message_length", MAX_FRAME_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]

SERVER_OPTIONS: list[tuple[str, int]] = [
    *COMMON_OPTIONS,
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
    ("grpc.so_reuseport", 0),
]


def server_credentials(config: NodeConfig) -> grpc.ServerCredentials:
    """TLS server credentials that require and verify a client certificate from our CA."""
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=config.ca_cert.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(config: NodeConfig) -> grpc.ChannelCredentials:
    """TLS client credentials presenting this node's certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=config.ca_cert.read_bytes(),
        private_key=config.tls_key.read_bytes(),
        certificate_chain=config.tls_cert.read_bytes(),
    )


def client_options(peer_name: str) -> list[tuple[str, int | str]]:
    """Channel options for dialing ``peer_name``: its certificate must carry that name."""
    return [*COMMON_OPTIONS, ("grpc.ssl_target_name_override", peer_name)]
