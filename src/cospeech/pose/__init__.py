"""Pose toolkit: the COCO-WholeBody-133 schema, regions, rigid similarity, rasterising, drawing."""

from cospeech.pose.draw import draw_pose, draw_pose_sequence
from cospeech.pose.raster import latent_frame_ranges, num_latent_frames, region_token_labels
from cospeech.pose.regions import REGION_LABELS, REGION_NAMES
from cospeech.pose.sequence import PoseSequence
from cospeech.pose.similarity import frame_similarity, pose_frame_similarity, rigid_alignment_error

__all__ = [
    "REGION_LABELS",
    "REGION_NAMES",
    "PoseSequence",
    "draw_pose",
    "draw_pose_sequence",
    "frame_similarity",
    "latent_frame_ranges",
    "num_latent_frames",
    "pose_frame_similarity",
    "region_token_labels",
    "rigid_alignment_error",
]
