"""The compression stage: candidates made from a baseline, measured as ONNX, one selected.

Modules, one job each: `quantize` (ONNX Runtime int8), `prune` (structured pruning),
`distill` (knowledge distillation), `measure` (quality, latency, size of an ONNX file),
`select` (accuracy-aware choice), `classification` (the candidate recipe for classifiers).
The quality of a candidate is pluggable (`measure.QualityTask`): classifiers are judged on
labels, embedding models on cosine similarity to the baseline's embeddings.
"""
