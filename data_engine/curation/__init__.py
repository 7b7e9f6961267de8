"""Image curation for text-to-image training (report 4.1.1): presets, quality cascade, dedup, content rules."""
