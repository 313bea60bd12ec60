"""From an `ECGRecord` to what ST-MEM expects: 250 Hz, band-passed, z-scored 12×2250 windows, one per beat.

The verbs (`resample`, `bandpass`, `find_beats`, `beat_quality`, `stmem_windows`) are plain functions over
NumPy arrays and a sample rate; `StreamingPreprocessor` runs the very same procedure on live chunks.
"""
