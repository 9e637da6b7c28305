"""tfl distill (draft)."""
