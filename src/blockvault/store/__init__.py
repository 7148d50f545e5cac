"""Encrypted volume store: format.py (pure codec pieces) -> volume.py (files, map, snapshots).

Spec: docs/design/volume-format.md.
"""

from blockvault.store.volume import UNIT_SIZE, SnapshotReader, VolumeStore, destroy

__all__ = ["UNIT_SIZE", "SnapshotReader", "VolumeStore", "destroy"]
