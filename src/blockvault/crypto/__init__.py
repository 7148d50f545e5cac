"""Recipes over hazmat: what the rest of blockvault uses for encryption."""

from blockvault.crypto.hazmat.aead import KEY_SIZES, NONCE_SIZE, TAG_SIZE, Aead

__all__ = ["KEY_SIZES", "NONCE_SIZE", "TAG_SIZE", "Aead"]
