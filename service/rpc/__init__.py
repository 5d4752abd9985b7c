"""The shared RPC runtime of the explainer and the adapters: errors and the interceptor that
maps them to status codes, server bootstrap, configuration and limits, request checks, and
the Score contract's wire format."""
