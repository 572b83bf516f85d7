"""The production WSGI server (waitress) that ``pcnode serve`` runs the Flask app in."""

from __future__ import annotations

import logging
import threading

from waitress.server import create_server

from node.services import NodeServices

log = logging.getLogger(__name__)

#: Worker threads for HTTP requests; the API is light, peers use gRPC.
HTTP_THREADS = 8


class HttpServer:
    """Runs ``node.http.app.create_app`` under waitress in a background thread."""

    def __init__(self, services: NodeServices) -> None:
        from node.http.app import create_app

        cfg = services.config
        self._server = create_server(create_app(services), host=cfg.http_host,
                                     port=cfg.http_port, threads=HTTP_THREADS,
                                     clear_untrusted_proxy_headers=True)
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        self._server.close()
