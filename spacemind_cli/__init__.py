"""spacemind: batch spatial-reasoning QA over 3D scenes with SpaceMind (arXiv 2511.23075)."""

__version__ = "0.1.0"
