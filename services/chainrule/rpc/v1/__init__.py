"""Stubs generated from protos/chainrule/rpc/v1 at build time (`make proto`); not committed."""
