"""The pcnode service: configuration, identity, catalog, policy, jobs, transport, HTTP API, CLI."""
