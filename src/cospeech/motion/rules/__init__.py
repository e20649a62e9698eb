"""The rule-based audio -> motion baseline (readable rules, no learning).

``generate_motion(phonemes, duration, fps, reference, style, rng, prosody=...)`` turns
phoneme timings (and optional per-frame prosody from the audio) into a PoseSequence that
moves a reference pose: visemes with coarticulation, blinks, head nods and tilts, beat
gestures, idle sway. Modules: ``face``, ``head``, ``gestures``, ``hands``, ``idle``,
``prosody``, ``rig`` (reference measurements), ``style``, ``compose``.
"""

from cospeech.motion.rules.compose import RuleConfig, RuleMotion, generate_motion
from cospeech.motion.rules.prosody import Prosody, prosody_from_audio, prosody_from_phonemes
from cospeech.motion.rules.style import HAND_SHAPES, GestureStyle, sample_gesture_style

__all__ = [
    "HAND_SHAPES",
    "GestureStyle",
    "Prosody",
    "RuleConfig",
    "RuleMotion",
    "generate_motion",
    "prosody_from_audio",
    "prosody_from_phonemes",
    "sample_gesture_style",
]
