"""The embedded inference harness: a small decoder-only transformer served with a paged KV cache
and continuous batching, measured from the inside.

`Engine` (exporter.harness.engine) is the embedding API: `await engine.generate(prompt, n)` or
`async for chunk in engine.stream(prompt, n)`. PyTorch is optional for the exporter: this package
imports nothing heavy, its torch-using modules (engine, model, attention, kv_cache, runner,
weights) are imported only when the harness runs.

Modules, one job each:
  config            model presets, engine settings, size parsing (torch-free)
  tokenizer         byte-level tokenizer (torch-free)
  block_allocator   the free list of KV blocks (torch-free)
  scheduler         continuous batching: admission, decode slots, preemption (torch-free)
  metrics           the figures the harness records: histograms, counters, gauges (torch-free)
  model             the transformer (RMSNorm, rotary positions, grouped-query attention, gated MLP)
  attention         attention that reads K/V through block tables
  kv_cache          the preallocated block pool and its sizing
  weights           weights from a fixed seed or a local safetensors file
  runner            one model step: batch tensors in, sampled tokens out
  core              the synchronous engine: requests, steps, metrics
  engine            the threaded, asyncio-facing engine (the embedding API)
  api/              the HTTP API: validation, admission control, SSE, its listener
  loadgen           the synthetic load generator: Poisson arrivals through the API (torch-free)
"""
