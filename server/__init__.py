"""The gRPC gateway in front of Triton: transport-neutral core (cache, codecs, errors, settings) and its gRPC layer."""
