"""Model components, checkpoint loading and the reference-attention processors (torch)."""
