"""The math layer: cross-modal interaction estimators, MultiSHAP metrics, faithfulness and
closed-form games, over one value-function contract (bool masks -> float64 values). It imports
neither gRPC nor the generated messages."""
