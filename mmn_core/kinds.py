"""The model kinds, by key and by the name people read (torch-free: the CLI parser and the app's labels use it;
checkpoint.MODEL_KINDS maps the same keys to their classes)."""
MODEL_NAMES = {"multimodn": "MultiModN", "pfusion": "P-Fusion"}
KINDS = tuple(MODEL_NAMES)
