"""pcnode: shared leaf package (version and the one error hierarchy).

The service lives in ``node``, protocol logic in ``protocols`` and the audit
log in ``ledger``. This package sits below all three so that each of them can
raise the same errors without importing one another.
"""

__version__ = "0.1.0"
