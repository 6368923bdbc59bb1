"""Configuration of the parameter server, from CHAINRULE_* environment variables."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class ParamServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHAINRULE_PARAMSERVER_")

    listen: str = "127.0.0.1:50051"  # CHAINRULE_PARAMSERVER_LISTEN; 0.0.0.0:50051 in a container
