"""Visual extractor: 600-d output, face-present flag, face weighting, frame sampling, save/load."""

import numpy as np
import pytest
import torch
from media_fixtures import face_frame

from engines.extractor_store import load_extractor, save_extractor
from engines.visual_extractor import (
    FramePreparer,
    VisualExtractor,
    VisualExtractorConfig,
    collate_visual,
    encode_frames,
    sample_frames,
)

SMALL = VisualExtractorConfig(width=8, scene_px=48, face_px=48, use_geometry=False)


@pytest.fixture(scope="module")
def preparer():
    prep = FramePreparer(SMALL)
    yield prep
    prep.close()


def faces_clip(count=20):
    return [face_frame(centre=(0.3 + 0.01 * i, 0.5)) for i in range(count)]


def test_output_is_scene_then_face_with_flag(preparer):
    model = VisualExtractor(SMALL)
    features = encode_frames(model, faces_clip(), preparer)
    assert features.vector.shape == (600,) and features.vector.dtype == np.float32
    assert features.face_present
    assert np.abs(features.vector[300:]).sum() > 0


def test_no_face_gives_zero_face_half_and_flag(preparer):
    model = VisualExtractor(SMALL)
    blank = [np.full((144, 192, 3), 90, np.uint8)] * 5
    features = encode_frames(model, blank, preparer)
    assert not features.face_present
    assert np.all(features.vector[300:] == 0) and np.abs(features.vector[:300]).sum() > 0


def test_no_frames_is_none(preparer):
    assert encode_frames(VisualExtractor(SMALL), [], preparer) is None


def test_fifteen_frames_sampled_evenly():
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(40)]
    picked = [int(f[0, 0, 0]) for f in sample_frames(frames, 15)]
    assert len(picked) == 15 and picked[0] == 0 and picked[-1] == 39
    assert sorted(picked) == picked and len(set(picked)) == 15
    assert len(sample_frames(frames[:6], 15)) == 6


def test_face_weights_are_normalised_box_areas(preparer):
    big = face_frame(size=(320, 160), face_px=100, centre=(0.25, 0.5))
    small = face_frame(size=(320, 160), face_px=60, centre=(0.75, 0.5))
    frame = np.where(np.arange(320)[None, :, None] < 160, big, small).astype(np.uint8)
    prepared = preparer([frame])
    weights = prepared.face_weights[0]
    assert prepared.faces.shape[1] == 2
    assert weights.sum() == pytest.approx(1.0)
    # Box areas scale with the square of the face width: 100^2 / (100^2 + 60^2) = 0.735.
    assert weights[0] == pytest.approx(0.735, abs=0.06)


def test_padding_in_a_batch_does_not_change_results(preparer):
    model = VisualExtractor(SMALL).eval()
    short, long = preparer(faces_clip(4)), preparer(faces_clip(15))
    with torch.no_grad():
        batch = model(collate_visual([short, long])).numpy()
        alone = model(collate_visual([short])).numpy()[0]
    assert np.allclose(batch[0], alone, atol=1e-5)


def test_save_and_load_round_trip(tmp_path, preparer):
    model = VisualExtractor(SMALL)
    save_extractor(model, tmp_path / "v")
    loaded = load_extractor(tmp_path / "v")
    assert isinstance(loaded, VisualExtractor) and loaded.config == SMALL
    clip = faces_clip(6)
    ours, theirs = encode_frames(loaded, clip, preparer), encode_frames(model, clip, preparer)
    assert np.allclose(ours.vector, theirs.vector, atol=1e-6)


def test_geometry_option_feeds_the_face_branch():
    config = VisualExtractorConfig(width=8, scene_px=48, face_px=48, use_geometry=True)
    prep = FramePreparer(config)
    try:
        prepared = prep(faces_clip(3))
        assert prepared.geometry.shape[-1] == 10 and np.abs(prepared.geometry).sum() > 0
        assert encode_frames(VisualExtractor(config), faces_clip(3), prep).vector.shape == (600,)
    finally:
        prep.close()
