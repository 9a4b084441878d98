"""Everything that talks to (or runs) Triton Inference Server."""
