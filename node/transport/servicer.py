"""The thin gRPC servicer: authenticate the caller from its certificate, translate, delegate.

Every handler does three things only: learn who the caller is from the
verified mTLS certificate (:meth:`NodeServicer.caller`), turn the request into
plain arguments, and call a plain function (job manager, catalog). Errors go
through :func:`node.transport.status.abort_with` and the one status table.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from node.identity import PeerIdentity, verify_node_certificate
from node.jobs.manager import JobManager
from node.services import NodeServices
from node.transport.generated.pcnode.v1 import node_pb2 as pb
from node.transport.generated.pcnode.v1 import node_pb2_grpc as pb_grpc
from node.transport.status import abort_with
from node.transport.stream_channel import GrpcChannel
from pcnode.errors import AuthenticationError, InvalidInput, PcnodeError, PeerUnavailable

log = logging.getLogger(__name__)


class NodeServicer(pb_grpc.NodeServicer):
    """Serves the ``pcnode.v1.Node`` service for one node."""

    def __init__(self, services: NodeServices, jobs: JobManager) -> None:
        self.services = services
        self.jobs = jobs

    # -- identity --------------------------------------------------------------------

    def caller(self, context: grpc.ServicerContext) -> PeerIdentity:
        """The verified identity of the calling node, or UNAUTHENTICATED."""
        auth = context.auth_context()
        pems = auth.get("x509_pem_cert") or []
        try:
            if not pems:
                raise AuthenticationError("no client certificate presented")
            identity = verify_node_certificate(pems[0], self.services.ca_certificate)
            # services.config re-reads node.toml when it changes (``pcnode peer add``)
            if identity.name not in self.services.config.peers:
                raise AuthenticationError(
                    f"certificate for {identity.name!r} is valid but {identity.name!r} is not "
                    "a configured peer",
                    hint=f"add it with: pcnode peer add {self.services.config.home} "
                         f"{identity.name} HOST:PORT",
                )
        except AuthenticationError as exc:
            log.warning("refused connection from %s: %s", context.peer(), exc)
            abort_with(context, exc)
        return identity

    # -- handlers ----------------------------------------------------------------------

    def OpenJob(self, request: pb.OpenJobRequest, context: grpc.ServicerContext) -> pb.OpenJobReply:  # noqa: N802
        """Open a job a peer initiates."""
        who = self.caller(context)
        try:
            spec = self.jobs.open(who, request.spec, request.signature)
        except PcnodeError as exc:
            abort_with(context, exc)
        return pb.OpenJobReply(job_id=spec.job_id, party=self.services.name)

    def Link(self, request_iterator: Iterator[pb.Frame], context: grpc.ServicerContext) -> Iterator[pb.Frame]:  # noqa: N802
        """Carry one job link; the first frame names the job."""
        who = self.caller(context)
        try:
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("body") != "hello":
                raise InvalidInput("a link must start with a Hello frame")
            job_id = first.hello.job_id
            ch = GrpcChannel(self.services.name, who.name)
            job = self.jobs.attach(job_id, who, ch)
            ch.timeout = job.spec.timeout
        except PcnodeError as exc:
            abort_with(context, exc)
        context.add_callback(lambda: ch._fail(PeerUnavailable(
            f"link from {who.name} ended", peer=who.name)))
        threading.Thread(target=ch.pump, args=(request_iterator,), name=f"pump-{who.name}",
                         daemon=True).start()
        yield from ch.outbound_frames()

    def CancelJob(self, request: pb.CancelJobRequest, context: grpc.ServicerContext) -> pb.CancelJobReply:  # noqa: N802
        """Cancel a job at a party's request."""
        who = self.caller(context)
        try:
            self.jobs.cancel(request.job_id, who, request.reason)
        except PcnodeError as exc:
            abort_with(context, exc)
        return pb.CancelJobReply()

    def ListCatalog(self, request: pb.ListCatalogRequest, context: grpc.ServicerContext) -> pb.JsonReply:  # noqa: N802
        """Catalog metadata visible to the caller."""
        who = self.caller(context)
        return self._json(context, lambda: self.services.catalog.public_listing(who.name))

    def SubmitApplication(self, request: pb.JsonRequest, context: grpc.ServicerContext) -> pb.JsonReply:  # noqa: N802
        """File an application from the caller."""
        who = self.caller(context)

        def run() -> Any:
            try:
                body = json.loads(request.body)
            except ValueError:
                raise InvalidInput("application body is not JSON") from None
            if not isinstance(body, dict):
                raise InvalidInput("application body must be a JSON object")
            return self.services.catalog.receive_application(who.name, body)

        return self._json(context, run)

    def GetApplication(  # noqa: N802
        self, request: pb.GetApplicationRequest, context: grpc.ServicerContext
    ) -> pb.JsonReply:
        """Status of one of the caller's applications."""
        who = self.caller(context)
        return self._json(context, lambda: self.services.catalog.application_status(
            who.name, request.application_id))

    def _json(self, context: grpc.ServicerContext, fn: Any) -> pb.JsonReply:
        try:
            result = fn()
        except PcnodeError as exc:
            abort_with(context, exc)
        return pb.JsonReply(body=json.dumps(result, default=str, ensure_ascii=False).encode())
