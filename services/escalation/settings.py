from pydantic import AliasChoices, Field

from servicekit.settings import ServiceSettings


class EscalationSettings(ServiceSettings):
    port: int = 50054
    # Any SQLAlchemy URL; empty means a SQLite file under data_dir.
    database_url: str = Field("", validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # Queue a handoff waits in when routing named none.
    default_queue: str = "general"
