"""The live service: a FastAPI app whose websocket turns streamed ECG into a synthetic echo clip per beat."""
