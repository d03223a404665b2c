"""Model ports, one folder per model (bonsai-style): config, layers, weights, sharding."""
