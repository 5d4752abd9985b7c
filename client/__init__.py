"""Python SDK for the multishap explainer service (arrives with the service)."""
