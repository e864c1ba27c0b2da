"""Settings: `config.toml` plus the environment, read once into frozen, validated values."""

from newsletter.config.render import LogoConfig, RenderConfig, SectionConfig
from newsletter.config.sections import DeliveryConfig, DkimConfig, WebConfig, WeeklyConfig
from newsletter.config.settings import (
    CONFIG_ENV,
    DRY_RUN_KEY,
    OLD_SECRETS_ENV,
    SECRET_ENV,
    SMTP_PASSWORD_ENV,
    FeedConfig,
    FetchConfig,
    Settings,
    SmtpConfig,
    load_settings,
)

__all__ = [
    "CONFIG_ENV",
    "DRY_RUN_KEY",
    "OLD_SECRETS_ENV",
    "SECRET_ENV",
    "SMTP_PASSWORD_ENV",
    "DeliveryConfig",
    "DkimConfig",
    "FeedConfig",
    "FetchConfig",
    "LogoConfig",
    "RenderConfig",
    "SectionConfig",
    "Settings",
    "SmtpConfig",
    "WebConfig",
    "WeeklyConfig",
    "load_settings",
]
