"""``python main.py serve``: the detector behind a local REST API, a WebSocket and a webcam page.

The same pipeline as the desktop app (``detector.pipeline.create_pipeline``); nothing here is
imported by the app, so FastAPI and uvicorn cost it nothing.
"""
