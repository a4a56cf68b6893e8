"""The main job on an embedded default: `python -m megabio.demo` (behind `make demo`)."""
