"""Generated gRPC stubs of the multishap.v1 contract (``make proto`` regenerates them)."""
