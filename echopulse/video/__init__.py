"""Echo clips to files people watch: per-beat MP4/GIF, one long video on the ECG's timeline, a contact sheet
and a manifest, every frame marked SYNTHETIC unless the caller turns the mark off (`echopulse generate`)."""
