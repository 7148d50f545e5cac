"""The ObjectStore port (base.py) and adapters: local.py (a directory), memory.py (tests)."""
