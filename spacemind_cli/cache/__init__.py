"""Content-addressed cache of frozen-encoder features (VGGT, InternViT), one Parquet file per scene.

The stage code computes the keys; this package only stores and fetches entries by key.
See ``store.py`` for the on-disk layout (the contract).
"""

from spacemind_cli.cache.store import (
    SCHEMA_VERSION,
    CacheEntry,
    EntryInfo,
    FeatureCache,
)

__all__ = ["SCHEMA_VERSION", "CacheEntry", "EntryInfo", "FeatureCache"]
