"""In-process caches of the gateway: image embeddings (by content) and recent mask logits (by mask id)."""
