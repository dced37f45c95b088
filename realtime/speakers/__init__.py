"""Speakers: who said each utterance, from voice embeddings."""
