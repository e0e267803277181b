"""A user's stray model.py next to their model/ package: never imported (the package wins)."""
raise ImportError("model.py was imported instead of the model/ package")
