"""NBD attach: the sans-I/O protocol codec, the Export contract, and the asyncio server."""
