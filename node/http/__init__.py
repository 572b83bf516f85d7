"""The node's HTTP API (Flask): datasets, applications, grants, peer catalog, regulator views.

``create_app(services)`` builds the WSGI app; ``pcnode serve`` runs it under
waitress. See docs/CATALOG.md for the route table and ``/openapi.json``.
"""

from node.http.app import create_app

__all__ = ["create_app"]
