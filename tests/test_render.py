"""Tests of the synthetic speaker renderer and its appearances."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest

from cospeech.data.synth.appearance import (
    BACKGROUND_KINDS,
    CLOTHING_STYLES,
    FALLBACK_CLOTHING_RGB,
    HAIR_PALETTE,
    HAIR_STYLES,
    IRIS_PALETTE,
    SKIN_TONE_RAMP,
    Appearance,
    sample_appearance,
)
from cospeech.data.synth.colours import (
    EYE_WHITE_RGB,
    LASH_RGB,
    PUPIL_RGB,
    RESERVED_CLEARANCE,
    RESERVED_RGB,
    segment_clearance,
    shades_clear,
)
from cospeech.data.synth.palette import Palette
from cospeech.data.synth.render import MOUTH_INTERIOR_RGB, TEETH_RGB, Renderer
from cospeech.data.synth.skeleton import BodyGeometry, neutral_pose
from cospeech.errors import InputError
from cospeech.pose import schema

SIZE = 256
# A pixel "has" a colour when within this RGB distance (anti-aliased edges blend colours).
COLOUR_TOLERANCE = 12.0
FINGERTIPS = (4, 8, 12, 16, 20)
MAX_MEAN_RESCALE_ERROR = 2.0  # mean |difference| (0-255) between the two scales


def _appearance(seed: int = 0, **changes: object) -> Appearance:
    base = sample_appearance(np.random.default_rng(seed))
    return Appearance.from_dict({**base.to_dict(), **changes})


@pytest.fixture(scope="module")
def geometry() -> BodyGeometry:
    return BodyGeometry()


@pytest.fixture(scope="module")
def pose(geometry: BodyGeometry) -> np.ndarray:
    return neutral_pose(geometry, SIZE, SIZE)


def _open_mouth(pose: np.ndarray, opening: float) -> np.ndarray:
    """Lower inner lip (and the lower outer lip with it) moved down by ``opening`` pixels."""
    opened = pose.copy()
    lower_inner = [schema.FACE_OFFSET + i for i in (65, 66, 67)]
    lower_outer = [schema.FACE_OFFSET + i for i in (55, 56, 57, 58, 59)]
    opened[lower_inner + lower_outer, 1] += opening
    return opened


def _close_eyes(pose: np.ndarray) -> np.ndarray:
    """Eyelid landmarks moved onto the line between the eye corners (a blink)."""
    closed = pose.copy()
    for eye in (schema.FACE_RIGHT_EYE, schema.FACE_LEFT_EYE):
        corners = closed[[eye[0], eye[3]], 1].mean()
        closed[[eye[1], eye[2], eye[4], eye[5]], 1] = corners
    return closed


def _distance_to_segment(colour: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """RGB distance from ``colour`` to the nearest blend of ``a`` and ``b``."""
    colour, a, b = (np.asarray(c, np.float64) for c in (colour, a, b))
    t = np.clip((colour - a) @ (b - a) / max((b - a) @ (b - a), 1e-9), 0.0, 1.0)
    return float(np.linalg.norm(colour - (a + t * (b - a))))


def _count_colour(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    distance = np.linalg.norm(image.astype(np.float64) - np.asarray(colour), axis=-1)
    return int((distance <= COLOUR_TOLERANCE).sum())


def test_render_shape_dtype_and_custom_size(pose: np.ndarray) -> None:
    image = Renderer(_appearance()).render(pose)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    wide = Renderer(_appearance(), width=320, height=192).render(
        neutral_pose(BodyGeometry(), 320, 192)
    )
    assert wide.shape == (192, 320, 3) and wide.dtype == np.uint8


def test_render_is_deterministic(pose: np.ndarray) -> None:
    first = Renderer(_appearance(3)).render(pose)
    again = Renderer(_appearance(3)).render(pose)
    np.testing.assert_array_equal(first, again)
    renderer = Renderer(_appearance(3))
    renderer.render(_open_mouth(pose, 6.0))
    np.testing.assert_array_equal(renderer.render(pose), first)


def test_mouth_interior_grows_monotonically_with_opening(
    pose: np.ndarray, geometry: BodyGeometry
) -> None:
    renderer = Renderer(_appearance(1))
    face_width = geometry.face_width * SIZE
    counts = [
        _count_colour(renderer.render(_open_mouth(pose, f * face_width)), MOUTH_INTERIOR_RGB)
        for f in (0.0, 0.05, 0.08, 0.12, 0.16, 0.2)
    ]
    assert counts[0] == 0
    assert all(b >= a for a, b in itertools.pairwise(counts)), counts
    assert counts[-1] > counts[1] > 0, counts


def test_teeth_show_only_when_the_mouth_is_open(pose: np.ndarray, geometry: BodyGeometry) -> None:
    renderer = Renderer(_appearance(2))
    assert _count_colour(renderer.render(pose), TEETH_RGB) == 0
    opened = renderer.render(_open_mouth(pose, 0.15 * geometry.face_width * SIZE))
    assert _count_colour(opened, TEETH_RGB) > 0


def test_eyes_close_on_blink(pose: np.ndarray) -> None:
    renderer = Renderer(_appearance(4))
    assert _count_colour(renderer.render(pose), EYE_WHITE_RGB) > 0
    assert _count_colour(renderer.render(_close_eyes(pose)), EYE_WHITE_RGB) == 0


def test_low_confidence_hand_is_not_drawn(pose: np.ndarray) -> None:
    renderer = Renderer(_appearance(5))
    full = renderer.render(pose)
    without = pose.copy()
    without[list(schema.LEFT_HAND), 2] = 0.1
    missing = renderer.render(without)
    tips = pose[[schema.LEFT_HAND[t] for t in FINGERTIPS], :2].round().astype(int)
    assert (full[tips[:, 1], tips[:, 0]] != missing[tips[:, 1], tips[:, 0]]).any()
    right_hand_box = pose[list(schema.RIGHT_HAND), :2]
    x0, y0 = right_hand_box.min(axis=0).astype(int)
    x1, y1 = right_hand_box.max(axis=0).astype(int)
    np.testing.assert_array_equal(full[y0:y1, x0:x1], missing[y0:y1, x0:x1])


def test_fingertips_are_skin_coloured(pose: np.ndarray) -> None:
    """Under every fingertip lies skin or its shadow/outline shade (the hand is drawn there)."""
    appearance = _appearance(6)
    palette = Palette.from_appearance(appearance)
    image = Renderer(appearance).render(pose)
    for hand in (schema.LEFT_HAND, schema.RIGHT_HAND):
        for tip in FINGERTIPS:
            x, y = pose[hand[tip], :2].round().astype(int)
            pixel = tuple(int(c) for c in image[y, x])
            distance = _distance_to_segment(pixel, palette.skin_outline, palette.skin)
            assert distance <= COLOUR_TOLERANCE, (hand[tip], pixel, appearance.skin_rgb)


def test_background_far_from_the_body_is_untouched(pose: np.ndarray) -> None:
    for kind in BACKGROUND_KINDS:
        renderer = Renderer(_appearance(7, background_kind=kind))
        image = renderer.render(pose)
        corner = SIZE // 8
        for rows, cols in (
            (slice(0, corner), slice(0, corner)),
            (slice(0, corner), slice(SIZE - corner, SIZE)),
        ):
            np.testing.assert_array_equal(image[rows, cols], renderer.background[rows, cols])


def test_every_style_renders_and_differs(pose: np.ndarray) -> None:
    images = []
    for hair in HAIR_STYLES:
        for clothing in CLOTHING_STYLES:
            images.append(
                Renderer(_appearance(8, hair_style=hair, clothing_style=clothing)).render(pose)
            )
    flat = {image.tobytes() for image in images}
    assert len(flat) == len(HAIR_STYLES) * len(CLOTHING_STYLES)


def test_closed_mouth_frame_has_no_reserved_colours(pose: np.ndarray) -> None:
    for seed in range(12):
        image = Renderer(_appearance(seed)).render(_close_eyes(pose))
        for colour in RESERVED_RGB:
            assert _count_colour(image, colour) == 0, (seed, colour)


def test_appearance_json_round_trip() -> None:
    appearance = _appearance(9)
    restored = Appearance.from_dict(json.loads(json.dumps(appearance.to_dict())))
    assert restored == appearance


def test_appearance_rejects_bad_values() -> None:
    data = _appearance(10).to_dict()
    with pytest.raises(InputError):
        Appearance.from_dict({**data, "hair_style": "mohawk"})
    with pytest.raises(InputError):
        Appearance.from_dict({**data, "skin_rgb": [300, 0, 0]})
    with pytest.raises(InputError):
        Appearance.from_dict({k: v for k, v in data.items() if k != "lip_rgb"})


def test_sample_appearance_is_deterministic_and_diverse() -> None:
    assert _appearance(11) == _appearance(11)
    samples = [sample_appearance(np.random.default_rng(seed)) for seed in range(60)]
    assert {a.hair_style for a in samples} == set(HAIR_STYLES)
    assert {a.clothing_style for a in samples} == set(CLOTHING_STYLES)
    assert {a.background_kind for a in samples} == set(BACKGROUND_KINDS)
    assert len({a.skin_rgb for a in samples}) > 40


def test_sampled_appearances_avoid_reserved_colours() -> None:
    for seed in range(200):
        appearance = sample_appearance(np.random.default_rng(seed))
        palette = Palette.from_appearance(appearance)
        for colour in vars(palette).values():
            assert segment_clearance(colour, colour) >= RESERVED_CLEARANCE, (seed, colour)
        for colour in (appearance.skin_rgb, appearance.hair_rgb, appearance.clothing_rgb):
            assert shades_clear(colour), (seed, colour)
        background = (appearance.background_rgb, appearance.background_second_rgb)
        assert segment_clearance(*background) >= RESERVED_CLEARANCE, seed
    for fixed in (EYE_WHITE_RGB, PUPIL_RGB, LASH_RGB):
        assert segment_clearance(fixed, fixed) >= RESERVED_CLEARANCE, fixed
    fallbacks = (SKIN_TONE_RAMP[0], HAIR_PALETTE[0], IRIS_PALETTE[0], FALLBACK_CLOTHING_RGB)
    assert all(shades_clear(colour) for colour in fallbacks)


def test_drawing_scales_with_the_body_not_the_image(pose: np.ndarray) -> None:
    """The pose drawn twice as large on a canvas twice as large, then halved, matches."""
    appearance = _appearance(14, background_kind="solid")
    small = Renderer(appearance, SIZE, SIZE).render(pose)
    doubled = pose.copy()
    doubled[:, :2] = pose[:, :2] * 2 + 0.5  # pixel centres of the doubled canvas
    large = Renderer(appearance, 2 * SIZE, 2 * SIZE).render(doubled)
    halved = cv2.resize(large, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    assert np.abs(halved.astype(float) - small).mean() < MAX_MEAN_RESCALE_ERROR


def test_arm_reaching_across_the_body_is_drawn_over_the_torso(pose: np.ndarray) -> None:
    appearance = _appearance(15, clothing_style="tshirt")
    reach = pose.copy()
    shoulder = pose[schema.LEFT_SHOULDER, :2]
    width = np.linalg.norm(pose[schema.LEFT_SHOULDER, :2] - pose[schema.RIGHT_SHOULDER, :2])
    elbow = shoulder + np.array([-0.3, 0.6]) * width  # inwards, below the shoulder
    reach[schema.LEFT_ELBOW, :2] = elbow
    reach[schema.LEFT_WRIST, :2] = elbow + np.array([-0.3, -0.2]) * width
    reach[list(schema.LEFT_HAND), 2] = 0.0
    image = Renderer(appearance).render(reach)
    x, y = (shoulder + 0.8 * (elbow - shoulder)).round().astype(int)  # skin below the sleeve
    assert np.linalg.norm(image[y, x].astype(float) - appearance.skin_rgb) <= COLOUR_TOLERANCE


def test_missing_keypoints_leave_only_the_background(pose: np.ndarray) -> None:
    renderer = Renderer(_appearance(12))
    missing = pose.copy()
    missing[:, 2] = 0.0
    np.testing.assert_array_equal(renderer.render(missing), renderer.background)


def test_degenerate_and_far_off_frame_poses_render() -> None:
    renderer = Renderer(_appearance(13))
    rng = np.random.default_rng(0)
    poses = [
        np.concatenate(
            [rng.uniform(0, SIZE, (schema.NUM_KEYPOINTS, 2)), np.ones((schema.NUM_KEYPOINTS, 1))], 1
        ),
        np.concatenate(
            [np.full((schema.NUM_KEYPOINTS, 2), 50.0), np.ones((schema.NUM_KEYPOINTS, 1))], 1
        ),
        np.concatenate(
            [rng.uniform(-1e9, 1e9, (schema.NUM_KEYPOINTS, 2)), np.ones((schema.NUM_KEYPOINTS, 1))],
            1,
        ),
    ]
    for keypoints in poses:
        image = renderer.render(keypoints.astype(np.float32))
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8


def test_render_rejects_bad_keypoints() -> None:
    renderer = Renderer(_appearance())
    with pytest.raises(InputError):
        renderer.render(np.zeros((17, 3), np.float32))
    bad = np.zeros((schema.NUM_KEYPOINTS, 3), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(InputError):
        renderer.render(bad)
