"""Face detection (mediapipe, OpenCV Haar fallback) and face-mesh geometry features that need no training.

mediapipe 0.10.21 is the last release that bundles its face models (STACK.md); where it is missing or
fails to start, the Haar cascade shipped with opencv 4.x takes over, logged once. Detectors hold native
graphs and are not thread-safe: use one per thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A face in pixel coordinates, clipped to the frame: columns x0..x1, rows y0..y1 (exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)


@dataclass
class FaceDetectorOptions:
    backend: str = "auto"
    """"mediapipe", "haar", or "auto" (mediapipe, Haar when mediapipe cannot start)."""
    min_score: float = 0.5
    """mediapipe detection confidence below which a face is dropped."""
    full_range: bool = True
    """mediapipe's full-range model (faces up to ~5 m, as in TV scenes) instead of the 2 m selfie model."""
    min_face_px: int = 16
    """Boxes smaller than this on either side are dropped: too few pixels to say anything about expression."""
    max_faces: int = 4
    """Largest faces kept per frame; bounds the face branch's cost in crowded scenes."""


class FaceDetector:
    """`detect(rgb)` -> faces, largest first."""

    def __init__(self, options: FaceDetectorOptions | None = None) -> None:
        self.options = options or FaceDetectorOptions()
        self._mediapipe = None
        self._haar = None
        if self.options.backend not in ("auto", "mediapipe", "haar"):
            raise ValueError(f"unknown face detector backend {self.options.backend!r}")
        if self.options.backend in ("auto", "mediapipe"):
            try:
                from mediapipe.python.solutions import face_detection

                self._mediapipe = face_detection.FaceDetection(
                    model_selection=1 if self.options.full_range else 0,
                    min_detection_confidence=self.options.min_score,
                )
            except Exception as error:
                if self.options.backend == "mediapipe":
                    raise
                logger.warning("mediapipe face detection unavailable (%s); using OpenCV Haar cascade", error)
        if self._mediapipe is None:
            import cv2

            self._haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    @property
    def backend(self) -> str:
        return "mediapipe" if self._mediapipe is not None else "haar"

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        boxes = self._detect_mediapipe(rgb) if self._mediapipe is not None else self._detect_haar(rgb)
        boxes = [b for b in boxes if min(b.x1 - b.x0, b.y1 - b.y0) >= self.options.min_face_px]
        boxes.sort(key=lambda b: b.area, reverse=True)
        return boxes[: self.options.max_faces]

    def close(self) -> None:
        if self._mediapipe is not None:
            self._mediapipe.close()
            self._mediapipe = None

    def _detect_mediapipe(self, rgb: np.ndarray) -> list[FaceBox]:
        height, width = rgb.shape[:2]
        result = self._mediapipe.process(rgb)
        boxes = []
        for detection in result.detections or []:
            rel = detection.location_data.relative_bounding_box
            boxes.append(
                _clip_box(
                    rel.xmin * width,
                    rel.ymin * height,
                    rel.width * width,
                    rel.height * height,
                    width,
                    height,
                    detection.score[0],
                )
            )
        return boxes

    def _detect_haar(self, rgb: np.ndarray) -> list[FaceBox]:
        import cv2

        height, width = rgb.shape[:2]
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        found = self._haar.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(self.options.min_face_px,) * 2
        )
        # The cascade gives no confidence; 1.0 keeps FaceBox uniform across backends.
        return [_clip_box(x, y, w, h, width, height, 1.0) for x, y, w, h in np.reshape(found, (-1, 4))]


def _clip_box(x: float, y: float, w: float, h: float, width: int, height: int, score: float) -> FaceBox:
    x0, y0 = round(max(0.0, float(x))), round(max(0.0, float(y)))
    x1, y1 = round(min(float(width), float(x + w))), round(min(float(height), float(y + h)))
    return FaceBox(x0, y0, max(x0, x1), max(y0, y1), float(score))


# Face-mesh indices (mediapipe's canonical 468-point mesh).
_EYE_OUTER = (33, 263)
_MOUTH_CORNERS = (61, 291)
_LIP_INNER = (13, 14)
_LIP_OUTER = (0, 17)
_LEFT_EYE_LIDS = (159, 145)
_RIGHT_EYE_LIDS = (386, 374)
_LEFT_BROW = (70, 63, 105, 66, 107)
_RIGHT_BROW = (300, 293, 334, 296, 336)
_LEFT_EYE_TOP, _RIGHT_EYE_TOP = 159, 386
_NOSE_TIP = 1

GEOMETRY_NAMES = (
    "mouth_open",
    "mouth_width",
    "lip_thickness",
    "mouth_corner_lift",
    "left_eye_open",
    "right_eye_open",
    "left_brow_raise",
    "right_brow_raise",
    "brow_gap",
    "nose_to_mouth",
)
"""Features of `FaceGeometry.vector`, each a distance divided by the outer-eye-corner distance so they
do not depend on face size or distance to camera."""


@dataclass(frozen=True, slots=True)
class FaceGeometry:
    vector: np.ndarray
    """(len(GEOMETRY_NAMES),) float32, in the order of GEOMETRY_NAMES."""


def geometry_from_landmarks(points: np.ndarray) -> FaceGeometry:
    """(468+, 2 or 3) landmark coordinates (any consistent unit) -> scale-free expression geometry."""
    p = np.asarray(points, dtype=np.float64)[:, :2]

    def dist(a: int, b: int) -> float:
        return float(np.linalg.norm(p[a] - p[b]))

    eye_span = max(dist(*_EYE_OUTER), 1e-6)
    corners_y = (p[_MOUTH_CORNERS[0], 1] + p[_MOUTH_CORNERS[1], 1]) / 2
    lip_centre_y = (p[_LIP_INNER[0], 1] + p[_LIP_INNER[1], 1]) / 2
    left_brow = p[list(_LEFT_BROW)].mean(axis=0)
    right_brow = p[list(_RIGHT_BROW)].mean(axis=0)
    values = [
        dist(*_LIP_INNER),
        dist(*_MOUTH_CORNERS),
        dist(*_LIP_OUTER) - dist(*_LIP_INNER),
        lip_centre_y - corners_y,  # image y grows downwards: positive when the corners are raised (smile)
        dist(*_LEFT_EYE_LIDS),
        dist(*_RIGHT_EYE_LIDS),
        float(np.linalg.norm(left_brow - p[_LEFT_EYE_TOP])),
        float(np.linalg.norm(right_brow - p[_RIGHT_EYE_TOP])),
        float(np.linalg.norm(left_brow - right_brow)),
        float(np.linalg.norm(p[_NOSE_TIP] - (p[_LIP_OUTER[0]]))),
    ]
    return FaceGeometry((np.asarray(values) / eye_span).astype(np.float32))


class FaceMeshGeometry:
    """Expression geometry (mouth, eyes, brows) of the largest faces in a frame, from mediapipe face mesh."""

    def __init__(self, max_faces: int = 1, static_images: bool = True) -> None:
        from mediapipe.python.solutions import face_mesh

        # static_images=False tracks between frames (faster on video) but needs consecutive frames of one stream.
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=static_images, max_num_faces=max_faces, refine_landmarks=False
        )

    def __call__(self, rgb: np.ndarray) -> list[FaceGeometry]:
        height, width = rgb.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(rgb, dtype=np.uint8))
        out = []
        for face in result.multi_face_landmarks or []:
            points = np.array([(lm.x * width, lm.y * height) for lm in face.landmark])
            out.append(geometry_from_landmarks(points))
        return out

    def close(self) -> None:
        self._mesh.close()
