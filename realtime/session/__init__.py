"""Session: one stream's live loop from frames to emotion results, final and interim."""
