"""Pose toolkit: the COCO-WholeBody-133 schema, regions, rigid similarity, rasterising, drawing."""

from cospeech.pose.draw import draw_pose, draw_pose_sequence
from cospeech.pose.raster import region_token_masks
from cospeech.pose.regions import ATTENTION_REGIONS, BODY_REGIONS, region_bits
from cospeech.pose.sequence import PoseSequence
from cospeech.pose.similarity import frame_similarity, pose_frame_similarity, rigid_alignment_error

__all__ = [
    "ATTENTION_REGIONS",
    "BODY_REGIONS",
    "PoseSequence",
    "draw_pose",
    "draw_pose_sequence",
    "frame_similarity",
    "pose_frame_similarity",
    "region_bits",
    "region_token_masks",
    "rigid_alignment_error",
]
