"""Sources: media files, microphone, camera and network streams as timed audio chunks and video frames."""
