"""Model code (no CLI / Ray imports here)."""

from spacemind_cli.models.vggt import VGGT, VGGTConfig, pose_encoding_to_extri_intri

__all__ = ["VGGT", "VGGTConfig", "pose_encoding_to_extri_intri"]
