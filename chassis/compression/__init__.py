"""The compression stage: candidates made from a baseline, measured as ONNX, one selected.

Modules, one job each: `quantize` (ONNX Runtime int8), `fusion` (transformer operator
fusion before int8), `prune` (structured pruning), `distill` (knowledge distillation),
`measure` (quality, latency, size of an ONNX file), `latency` (interleaved timing),
`select` (accuracy-aware choice), `classification` and `embedding` (the candidate recipes
for classifiers and embedding models).
The quality of a candidate is pluggable (`measure.QualityTask`): classifiers are judged on
labels, embedding models on cosine similarity to the baseline's embeddings.
"""
