"""The media every model here takes: one definition of the sample rate and the modality names."""

SAMPLE_RATE_HZ = 16_000
"""Mono audio at 16 kHz: Silero VAD, Whisper, the voice encoder and the audio extractor all take it."""

MODALITIES = ("text", "audio", "visual")
"""M2FNet's inputs, in the order messages and checkpoints list them."""

MEDIA_MODALITIES = MODALITIES[1:]
"""The modalities with a trained extractor (text uses the language model)."""
