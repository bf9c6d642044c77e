from pydantic import AliasChoices, Field

from servicekit.settings import ServiceSettings


class OutreachSettings(ServiceSettings):
    port: int = 50055
    # Any SQLAlchemy URL; empty means a SQLite file under data_dir.
    database_url: str = Field("", validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # Valid events of a RecordUsage stream are stored in transactions of at most this many.
    usage_batch_size: int = Field(500, ge=1, le=10_000)
