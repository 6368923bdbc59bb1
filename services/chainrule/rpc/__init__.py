"""The wire: protobuf messages and the one place ndarrays become Tensors (codec.py)."""

PROTOCOL_VERSION = 5
"""What the services speak to each other, sent with Register and CreateJob; bumped
whenever a peer of the old version would misread the new one (2: runs of sync steps,
plans in runs, heartbeats; 3: leader epochs fence the scheduler's calls; 4: a task's rows
as packed bytes; 5: a task's failure as a code, not a message to parse). A peer of another version is refused, naming both."""


def protocol_mismatch(theirs: int, role: str) -> str | None:
    """Why a peer speaking ``theirs`` is refused, or None when it speaks this version."""
    if theirs == PROTOCOL_VERSION:
        return None
    return (
        f"this {role} speaks chainrule protocol {PROTOCOL_VERSION}; the caller speaks "
        f"{theirs or 'an older one (1 or unset)'}: run the same chainrule release everywhere"
    )
