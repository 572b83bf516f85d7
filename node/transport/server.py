"""Build the node's gRPC server: the Node service and standard health checking, mTLS only."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from node.jobs.manager import JobManager
from node.services import NodeServices
from node.transport.credentials import SERVER_OPTIONS, server_credentials
from node.transport.generated.pcnode.v1 import node_pb2_grpc as pb_grpc
from node.transport.servicer import NodeServicer

#: Each open link holds a server thread for the life of its job; 64 allows
#: dozens of concurrent three-party jobs on one node.
MAX_WORKERS = 64
SERVICE_NAME = "pcnode.v1.Node"


def build_server(services: NodeServices, jobs: JobManager | None = None,
                 port: int | None = None) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Create (not start) the server bound to the configured host and port; return it and the port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                                    thread_name_prefix="grpc"),
                         options=SERVER_OPTIONS)
    pb_grpc.add_NodeServicer_to_server(NodeServicer(services, jobs or JobManager(services)), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    cfg = services.config
    bound = server.add_secure_port(f"{cfg.grpc_host}:{cfg.grpc_port if port is None else port}",
                                   server_credentials(cfg))
    if bound == 0:
        from pcnode.errors import ConfigError

        raise ConfigError(f"{cfg.path}: [grpc] port: cannot bind {cfg.grpc_host}:{cfg.grpc_port}",
                          hint="the port is in use or not allowed; choose another")
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health_servicer
