"""chainrule: a parameter-server trainer that is correct to the last derivative."""

__version__ = "0.1.0"
