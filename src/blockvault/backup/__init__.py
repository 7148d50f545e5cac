"""Volume backups to an object store: per-backup DEKs, incremental chunks, manifests (docs/design/backup-format.md).

format.py        pure codecs: chunk objects, manifests, object names
planner.py       pure: which chunks to store, which to inherit from the parent
engine.py        I/O edge: write / read / restore / delete over an ObjectStore
objectstore/     the ObjectStore port (base.py) and its adapters
"""
