"""How the local launcher names, places and configures K parameter-server shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainrule.cli.stack import LocalStack, StackConfig


def test_one_paramserver_keeps_its_plain_name_and_port() -> None:
    config = StackConfig(paramserver_port=50051)
    assert config.paramserver_names == ["paramserver"]
    assert config.paramserver_ports == [50051]


def test_shards_are_numbered_and_every_process_gets_the_whole_list(tmp_path: Path) -> None:
    config = StackConfig(
        paramservers=3, paramserver_port=7001, more_paramserver_ports=[7002, 7003], log_dir=tmp_path
    )
    assert config.paramserver_names == ["paramserver-0", "paramserver-1", "paramserver-2"]
    stack = LocalStack(config)
    assert stack.env()["CHAINRULE_PARAMSERVERS"] == "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    assert stack.paramserver_target("paramserver-2") == "127.0.0.1:7003"


def test_a_port_per_shard_is_required_and_at_least_one_shard() -> None:
    with pytest.raises(ValueError, match=r"3 paramservers need 2 more port\(s\)"):
        StackConfig(paramservers=3, more_paramserver_ports=[7002])
    with pytest.raises(ValueError, match="paramservers must be >= 1; got 0"):
        StackConfig(paramservers=0)
