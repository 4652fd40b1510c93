"""The model at serving time: its card, the Ultralytics runtime, the inference backends, the segmenter,
mask refinement and the `wardrobe predict` drawing. Imported by the worker and by training; imports
neither (only `db` for settings and the taxonomy)."""
