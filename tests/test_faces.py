"""Face detection (mediapipe and the Haar fallback) and face-mesh geometry on the astronaut photo."""

import numpy as np
import pytest
from media_fixtures import ASTRONAUT_FACE
from skimage import data

from engines.faces import (
    GEOMETRY_NAMES,
    FaceBox,
    FaceDetector,
    FaceDetectorOptions,
    FaceMeshGeometry,
    geometry_from_landmarks,
)


def iou(box: FaceBox, ref) -> float:
    x0, y0, x1, y1 = max(box.x0, ref[0]), max(box.y0, ref[1]), min(box.x1, ref[2]), min(box.y1, ref[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (box.area + (ref[2] - ref[0]) * (ref[3] - ref[1]) - inter)


@pytest.mark.parametrize("backend", ["mediapipe", "haar"])
def test_finds_the_astronaut(backend):
    detector = FaceDetector(FaceDetectorOptions(backend=backend))
    try:
        assert detector.backend == backend
        boxes = detector.detect(data.astronaut())
    finally:
        detector.close()
    assert len(boxes) == 1
    assert iou(boxes[0], ASTRONAUT_FACE) > 0.6


@pytest.fixture(scope="module")
def detector():
    found = FaceDetector()
    yield found
    found.close()


def test_blank_frame_has_no_face(detector):
    assert detector.detect(np.zeros((120, 160, 3), np.uint8)) == []


def test_boxes_are_clipped_and_sorted_largest_first(detector):
    image = data.astronaut()
    # Face cut by the left edge plus a full face: both boxes inside the frame.
    frame = np.concatenate([image[:, 220:420], image[:, 100:400]], axis=1)
    boxes = detector.detect(frame)
    assert all(0 <= b.x0 <= b.x1 <= frame.shape[1] and 0 <= b.y0 <= b.y1 <= frame.shape[0] for b in boxes)
    assert [b.area for b in boxes] == sorted((b.area for b in boxes), reverse=True)


def test_geometry_is_scale_free():
    points = np.random.default_rng(0).uniform(0, 100, (468, 2))
    a = geometry_from_landmarks(points).vector
    b = geometry_from_landmarks(points * 3.0 + 7.0).vector
    assert a.shape == (len(GEOMETRY_NAMES),) and np.allclose(a, b, atol=1e-5)


def test_face_mesh_geometry_on_the_astronaut():
    mesh = FaceMeshGeometry()
    try:
        found = mesh(data.astronaut())
        assert mesh(np.zeros((120, 160, 3), np.uint8)) == []
    finally:
        mesh.close()
    assert len(found) == 1
    values = dict(zip(GEOMETRY_NAMES, found[0].vector))
    # A closed-mouth smile: lips nearly together, mouth about 0.6-0.9 of the eye span wide.
    assert values["mouth_open"] < 0.2 and 0.5 < values["mouth_width"] < 1.0
    assert values["left_eye_open"] > 0.03 and values["right_eye_open"] > 0.03
