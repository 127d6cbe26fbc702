"""The harness's HTTP API: OpenAI-style completions with admission control.

Modules, one job each:
  validation   the request body, parsed and type-checked (400 saying what was wrong)
  admission    token budget (413/400), load shedding and the bounded queue (503, Retry-After)
  errors       an error's status, OpenAI-style JSON body and counted outcome
  sse          server-sent events
  routes       the handlers: POST /v1/completions, GET /v1/models
  server       the listener and the synthetic load, started and stopped together
"""
