"""Pure privacy-computing protocols, written against :class:`protocols.channel.Channel`.

Nothing in this package imports gRPC, Flask or ``node``.
"""
