"""The service side of multishap, in three layers whose imports point one way.

- :mod:`.math`: estimators, metrics, faithfulness and games with closed-form truth over one
  value-function contract; plain Python and numpy, no gRPC.
- :mod:`.rpc`: what every server shares: the error classes and the interceptor that maps them
  to status codes, server bootstrap, configuration and limits, request checks, the wire format.
- :mod:`.explainer`: the Explainer server: servicer, options, jobs, streaming, targets, admission, readiness.

Adapters (``multishap.adapters``) sit beside the explainer on top of :mod:`.rpc`; the client
(``multishap.client``) sits on top of both. ``docs/architecture.md`` draws the whole.
"""
