"""Pose toolkit: the COCO-WholeBody-133 schema, regions, rigid similarity, rasterising, drawing."""

from cospeech.pose.regions import REGION_LABELS, REGION_NAMES
from cospeech.pose.sequence import PoseSequence

__all__ = ["REGION_LABELS", "REGION_NAMES", "PoseSequence"]
