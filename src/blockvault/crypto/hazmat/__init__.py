"""Hazardous primitives: fixed sizes, no policy. Only blockvault.crypto may import this package."""
