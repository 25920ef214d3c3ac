"""transport: Phoenix's wire protocol, sockets, channels and PubSub (next issues).

The package is reserved by the design card's layout; it gains its modules with the
sockets/channels/PubSub issue.
"""
