"""multishap service side: estimators, metrics, and (later) the explainer server."""
