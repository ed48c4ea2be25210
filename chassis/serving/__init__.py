"""The serving gateway: ONNX Runtime sessions behind a small ASGI app, with routing for
canary, shadow and blue-green rollouts, an authenticated admin API and Prometheus metrics."""
