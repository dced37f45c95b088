"""Visual feature extractor (M2FNet section 3.3): 15 frames -> concat(scene 300, face 300) = 600 dims.

Scene branch: ResNet18 + linear on each whole frame, max-pooled over frames. Face branch: every detected
face encoded (ResNet18 features, plus optional face-mesh geometry) + linear, summed with weights = box
area / total face area in that frame, then max-pooled over the frames that have a face. The face half is
zeros when no frame has a face; `VisualFeatures.face_present` says so, so callers never mistake it for a face.

Detection is not differentiable, so it runs once in `FramePreparer` and training caches the prepared crops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from engines.faces import GEOMETRY_NAMES, FaceDetector, FaceDetectorOptions, FaceMeshGeometry
from engines.resnet import ResNetConfig, ResNetTrunk

logger = logging.getLogger(__name__)


@dataclass
class VisualExtractorConfig:
    frames_per_utterance: int = 15
    """Frames sampled evenly over an utterance (paper)."""
    scene_px: int = 112
    """Whole frames are resized (not cropped) to this square: the scene branch should see all of it."""
    face_px: int = 64
    """Face crops are resized to this square."""
    face_margin: float = 0.15
    """Each face box grows by this fraction per side before cropping, to keep brows and chin."""
    max_faces: int = 4
    """Largest faces kept per frame."""
    branch_dim: int = 300
    """Output of each branch; the extractor returns 2 x branch_dim (paper: 300 + 300)."""
    width: int = 32
    """ResNet18 stage-1 channels for both branches (64 = paper size; 32 is ~4x cheaper on CPU)."""
    use_geometry: bool = True
    """Append face-mesh expression geometry (engines/faces.py) to each face's CNN features: it carries
    mouth/eye/brow shape without any training data, which a from-scratch face CNN lacks."""

    @property
    def out_dim(self) -> int:
        return 2 * self.branch_dim


@dataclass
class VisualInput:
    """One utterance's frames after detection, ready for the network (what training caches)."""

    scenes: np.ndarray
    """(F, scene_px, scene_px, 3) uint8."""
    faces: np.ndarray
    """(F, M, face_px, face_px, 3) uint8, M = most faces in one frame (<= max_faces); unused slots are zero."""
    face_weights: np.ndarray
    """(F, M) float32: box area / total face area in the frame; 0 for unused slots."""
    geometry: np.ndarray
    """(F, M, len(GEOMETRY_NAMES)) float32; zeros where the mesh found nothing."""

    @property
    def face_present(self) -> bool:
        return bool((self.face_weights > 0).any())


@dataclass
class VisualFeatures:
    vector: np.ndarray
    """(600,) float32: scene half then face half."""
    face_present: bool
    """False when no face was found in any frame: the face half is then zeros, not a face."""


def sample_frames(frames: list[np.ndarray], count: int) -> list[np.ndarray]:
    """`count` frames evenly spread over the list (all of them when there are fewer)."""
    if len(frames) <= count:
        return list(frames)
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in picks]


class FramePreparer:
    """Samples frames, finds faces, crops and resizes. Holds native detectors: one per thread."""

    def __init__(self, config: VisualExtractorConfig, detector: FaceDetector | None = None) -> None:
        self.config = config
        self.detector = detector or FaceDetector(FaceDetectorOptions(max_faces=config.max_faces))
        self.mesh = FaceMeshGeometry() if config.use_geometry else None

    def __call__(self, frames: list[np.ndarray]) -> VisualInput | None:
        c = self.config
        frames = sample_frames([f for f in frames if f is not None and f.size], c.frames_per_utterance)
        if not frames:
            return None
        count = len(frames)
        scenes = np.zeros((count, c.scene_px, c.scene_px, 3), np.uint8)
        faces = np.zeros((count, c.max_faces, c.face_px, c.face_px, 3), np.uint8)
        weights = np.zeros((count, c.max_faces), np.float32)
        geometry = np.zeros((count, c.max_faces, len(GEOMETRY_NAMES)), np.float32)
        for index, frame in enumerate(frames):
            rgb = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
            scenes[index] = cv2.resize(rgb, (c.scene_px, c.scene_px), interpolation=cv2.INTER_AREA)
            boxes = self.detector.detect(rgb)[: c.max_faces]
            total = float(sum(b.area for b in boxes))
            for slot, box in enumerate(boxes):
                crop = _crop(rgb, box.x0, box.y0, box.x1, box.y1, c.face_margin)
                faces[index, slot] = cv2.resize(crop, (c.face_px, c.face_px), interpolation=cv2.INTER_AREA)
                weights[index, slot] = box.area / total
                if self.mesh is not None:
                    found = self.mesh(crop)
                    if found:
                        geometry[index, slot] = found[0].vector
        # Keep only as many face slots as the busiest frame used: most clips have one face, and training
        # holds thousands of these in memory. collate_visual pads the slots back per batch.
        slots = int((weights > 0).sum(axis=1).max())
        return VisualInput(scenes, faces[:, :slots], weights[:, :slots], geometry[:, :slots])

    def close(self) -> None:
        self.detector.close()
        if self.mesh is not None:
            self.mesh.close()


def _crop(rgb: np.ndarray, x0: int, y0: int, x1: int, y1: int, margin: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    dx, dy = int((x1 - x0) * margin), int((y1 - y0) * margin)
    return rgb[max(0, y0 - dy) : min(height, y1 + dy), max(0, x0 - dx) : min(width, x1 + dx)]


@dataclass
class VisualBatch:
    scenes: torch.Tensor
    """(B, F, 3, S, S) float."""
    frame_mask: torch.Tensor
    """(B, F) bool: real frames (utterances have different frame counts)."""
    faces: torch.Tensor
    """(B, F, M, 3, s, s) float."""
    face_weights: torch.Tensor
    """(B, F, M) float; 0 marks an empty slot."""
    geometry: torch.Tensor
    """(B, F, M, G) float."""


def _to_float(images: np.ndarray) -> torch.Tensor:
    # uint8 (..., H, W, 3) -> float (..., 3, H, W), roughly zero-mean unit-range.
    tensor = torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)
    return tensor.movedim(-1, -3)


def collate_visual(inputs: list[VisualInput]) -> VisualBatch:
    """Pads utterances to the longest frame count in the batch."""
    frames = max(len(x.scenes) for x in inputs)
    slots = max(1, max(x.faces.shape[1] for x in inputs))
    batch = len(inputs)
    first = inputs[0]
    scenes = np.zeros((batch, frames, *first.scenes.shape[1:]), np.uint8)
    faces = np.zeros((batch, frames, slots, *first.faces.shape[2:]), np.uint8)
    weights = np.zeros((batch, frames, slots), np.float32)
    geometry = np.zeros((batch, frames, slots, first.geometry.shape[-1]), np.float32)
    mask = np.zeros((batch, frames), bool)
    for row, x in enumerate(inputs):
        n, m = len(x.scenes), x.faces.shape[1]
        scenes[row, :n] = x.scenes
        faces[row, :n, :m], weights[row, :n, :m], geometry[row, :n, :m] = x.faces, x.face_weights, x.geometry
        mask[row, :n] = True
    return VisualBatch(
        _to_float(scenes),
        torch.from_numpy(mask),
        _to_float(faces),
        torch.from_numpy(weights),
        torch.from_numpy(geometry),
    )


class _Encoder(nn.Module):
    """ResNet18 trunk, global average pool, linear to branch_dim (with `extra` features appended first)."""

    def __init__(self, width: int, out_dim: int, extra: int = 0) -> None:
        super().__init__()
        config = ResNetConfig(in_channels=3, width=width)
        self.trunk = ResNetTrunk(config)
        self.project = nn.Linear(config.out_channels + extra, out_dim)

    def forward(self, images: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        pooled = self.trunk(images).mean(dim=(2, 3))
        if extra is not None:
            pooled = torch.cat([pooled, extra], dim=1)
        return self.project(pooled)


def _masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of (B, F, D) where mask (B, F) is True; rows with no True give zeros."""
    filled = values.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    return torch.where(mask.any(dim=1, keepdim=True), filled, torch.zeros_like(filled))


class VisualExtractor(nn.Module):
    def __init__(self, config: VisualExtractorConfig | None = None) -> None:
        super().__init__()
        self.config = config or VisualExtractorConfig()
        c = self.config
        self.scene = _Encoder(c.width, c.branch_dim)
        self.face = _Encoder(c.width, c.branch_dim, extra=len(GEOMETRY_NAMES) if c.use_geometry else 0)

    def forward(self, batch: VisualBatch) -> torch.Tensor:
        """-> (B, 2 * branch_dim)."""
        b, f = batch.frame_mask.shape
        scene = self.scene(batch.scenes.flatten(0, 1)).view(b, f, -1)
        scene = _masked_max(scene, batch.frame_mask)

        m = batch.face_weights.shape[2]
        used = (batch.face_weights > 0).flatten()
        face_all = scene.new_zeros(b * f * m, self.config.branch_dim)
        if used.any():
            # Only real faces go through the CNN: most slots are empty and BatchNorm must not see padding.
            extra = batch.geometry.flatten(0, 2)[used] if self.config.use_geometry else None
            face_all[used] = self.face(batch.faces.flatten(0, 2)[used], extra)
        weighted = (face_all.view(b, f, m, -1) * batch.face_weights.unsqueeze(-1)).sum(dim=2)
        has_face = (batch.face_weights > 0).any(dim=2) & batch.frame_mask
        return torch.cat([scene, _masked_max(weighted, has_face)], dim=1)


@torch.inference_mode()
def encode_frames(
    model: VisualExtractor, frames: list[np.ndarray], preparer: FramePreparer
) -> VisualFeatures | None:
    """One utterance's RGB frames -> features and the face-present flag; None when there are no frames,
    so the caller masks the visual modality. The caller owns `preparer` (its detectors take ~1 s to
    start and are not thread-safe)."""
    prepared = preparer(frames)
    if prepared is None:
        return None
    model.eval()
    vector = model(collate_visual([prepared]))[0].numpy().astype(np.float32)
    return VisualFeatures(vector, prepared.face_present)
