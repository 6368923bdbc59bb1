"""The wire: protobuf messages and the one place ndarrays become Tensors (codec.py)."""
