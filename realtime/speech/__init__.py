"""Speech: voice activity, utterance boundaries and Whisper transcription."""
