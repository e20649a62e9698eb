"""The generate contact sheet: its bands, and the mouth band cut around the lips."""

from __future__ import annotations

import numpy as np

from cospeech.data.synth.colours import MOUTH_INTERIOR_RGB
from cospeech.eval.contact_sheet import CHART_HEIGHT, ZOOM, contact_sheet
from cospeech.pose import schema


def test_sheet_has_frames_mouths_and_chart_and_the_mouth_band_is_centred_on_the_lips():
    count, size, columns = 4, 32, 4
    frames = np.full((count, size, size, 3), 200, np.uint8)
    frames[2, 14:18, 12:16] = MOUTH_INTERIOR_RGB  # an open mouth in frame 2 only
    keypoints = np.zeros((count, schema.NUM_KEYPOINTS, 3), np.float32)
    keypoints[:, list(schema.FACE_OUTER_LIPS)] = (14.0, 16.0, 1.0)  # lip centre (14, 16)
    keypoints[:, schema.LEFT_WRIST] = (8.0, 30.0, 1.0)
    keypoints[:, schema.RIGHT_WRIST] = (24.0, 30.0, 1.0)
    sheet = contact_sheet(frames, keypoints, np.zeros(16000, np.float32), 16000, 25.0, columns)
    cell = size * ZOOM
    assert sheet.shape == (size * ZOOM + cell + CHART_HEIGHT, cell * columns, 3)
    mouths = sheet[size * ZOOM : size * ZOOM + cell]
    centre = mouths[cell // 2, 2 * cell + cell // 2]  # column 2 shows frame 2
    np.testing.assert_array_equal(centre, MOUTH_INTERIOR_RGB)
    assert not (mouths[:, :cell] == MOUTH_INTERIOR_RGB).all(axis=-1).any()  # frame 0: closed
