"""The data catalog and authorisation: datasets, applications, grants, enforcement, tokens.

See docs/CATALOG.md. The one entry point is :class:`Catalog`; the job code on a
provider calls :meth:`Catalog.authorize`, :meth:`Catalog.spend_epsilon` and
:meth:`Catalog.open_dataset`; the gRPC servicer calls
:meth:`Catalog.public_listing`, :meth:`Catalog.receive_application` and
:meth:`Catalog.application_status`.
"""

from node.catalog.catalog import Catalog
from node.catalog.datasets import DatasetHandle
from node.catalog.enforcement import RULES
from node.catalog.grants import OPERATIONS, PSI_MODES, Grant
from node.catalog.sources import CsvSource, ParquetSource, Source, SqlSource, open_source
from node.catalog.tokens import ROLES, TokenInfo

__all__ = [
    "OPERATIONS",
    "PSI_MODES",
    "ROLES",
    "RULES",
    "Catalog",
    "CsvSource",
    "DatasetHandle",
    "Grant",
    "ParquetSource",
    "Source",
    "SqlSource",
    "TokenInfo",
    "open_source",
]
