"""Regions as separate processes: the HTTP transport of the cross-region Protocols (docs/design/regions.md).

codec.py (plain data <-> frames), registry.py (Protocols -> remote operations), identity.py (the service identity
that signs peer calls), client.py (generated proxies), routes.py (the internal routes), interfaces.py (what is
registered, and `PeerLinks`, the one place that connects every region's peers), shared.py (what the processes of
one data dir share: locks, the admin clock, the identity change signal). An edge, like api/: domains see only their
Protocols.
"""
