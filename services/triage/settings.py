from pathlib import Path

from pydantic import AliasChoices, Field, field_validator

from servicekit.settings import ServiceSettings

_DEFAULT_POLICY = Path(__file__).with_name("policy.default.json")
# Trained by `python -m services.triage.sentiment_train` (services/triage/sentiment.py).


class TriageSettings(ServiceSettings):
    port: int = 50052
    # Priority weights, risk thresholds and routing rules; read once at start-up.
    policy_file: Path = Field(
        default=_DEFAULT_POLICY, validation_alias=AliasChoices("TRIAGE_POLICY_FILE", "policy_file")
    )
    # Sentiment model file (JSON, see services/triage/sentiment.py), or "vader" for the lexicon alone.
    sentiment_model: str = Field(
        default="vader", validation_alias=AliasChoices("TRIAGE_SENTIMENT_MODEL", "sentiment_model")
    )
    # Intent models live in the triage database (DATABASE_URL, or <data_dir>/triage.db), shared by every
    # replica; services/triage/intent_store.py.
    # Every replica polls which version serves this often (on PostgreSQL a NOTIFY wakes it at once):
    # a promotion or rollback through any replica serves on every one within about this bound.
    intent_follow_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        validation_alias=AliasChoices("TRIAGE_MODEL_FOLLOW_SECONDS", "intent_follow_seconds"),
    )
    # Retrain rejects labels with fewer examples than this.
    intent_min_examples_per_label: int = Field(
        default=5,
        ge=2,
        validation_alias=AliasChoices("TRIAGE_INTENT_MIN_EXAMPLES_PER_LABEL", "intent_min_examples_per_label"),
    )
    # At most this many examples in one Retrain.
    intent_max_examples: int = Field(
        default=100_000, ge=10, validation_alias=AliasChoices("TRIAGE_INTENT_MAX_EXAMPLES", "intent_max_examples")
    )
    # A new version is promoted when validation accuracy >= current - this ...
    intent_accuracy_tolerance: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        validation_alias=AliasChoices("TRIAGE_INTENT_ACCURACY_TOLERANCE", "intent_accuracy_tolerance"),
    )
    # ... and validation ECE <= current + this.
    intent_ece_tolerance: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        validation_alias=AliasChoices("TRIAGE_INTENT_ECE_TOLERANCE", "intent_ece_tolerance"),
    )
    # The sentence encoders intent models read, in order, comma-separated: `minilm`
    # (all-MiniLM-L6-v2), `mpnet` (all-mpnet-base-v2, assembled from its PyPI parts on first use)
    # or a sentence-transformers folder. A model records the set it was trained with and is refused
    # (FAILED_PRECONDITION) by a service running another set. The first one also feeds the sentiment model.
    intent_encoders: str = Field(
        default="minilm,mpnet", validation_alias=AliasChoices("TRIAGE_INTENT_ENCODERS", "intent_encoders")
    )
    # Where `mpnet` is unpacked (about 440 MB, checksum-checked, once per machine);
    # empty: $XDG_CACHE_HOME/aftercare/encoders (~/.cache/aftercare/encoders).
    encoder_cache_dir: Path | None = Field(
        default=None, validation_alias=AliasChoices("TRIAGE_ENCODER_CACHE_DIR", "encoder_cache_dir")
    )

    @field_validator("intent_encoders")
    @classmethod
    def _encoders_listed(cls, value: str) -> str:
        from services.triage.encoder import parse_encoders

        return ",".join(parse_encoders(value))

    # A retrain operation whose replica stopped heartbeating this long ago is taken over by another
    # replica and run again (one on this host is taken back after 5 s: the process restarted).
    operation_stale_s: float = Field(
        default=30.0, gt=0, validation_alias=AliasChoices("TRIAGE_OPERATION_STALE_S", "operation_stale_s")
    )
    # Torch intra-op threads for the encoder (0: torch's default). One is fastest on a small shared CPU.
    torch_threads: int = Field(default=1, ge=0, validation_alias=AliasChoices("TRIAGE_TORCH_THREADS", "torch_threads"))
    # Tier 0 asks retrieval for articles and tips; no default, so a deployment that forgets it fails at boot.
    retrieval_addr: str = Field(validation_alias=AliasChoices("RETRIEVAL_ADDR", "retrieval_addr"))
    # Tier-0 dismissals and shown suggestions: any SQLAlchemy URL; empty means a SQLite file under data_dir.
    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # Below this cosine similarity of passage to query, Tier 0 suggests nothing.
    tier0_min_relevance: float = Field(
        default=0.45,
        ge=0.0,
        le=1.0,
        validation_alias=AliasChoices("TRIAGE_TIER0_MIN_RELEVANCE", "tier0_min_relevance"),
    )
    # Without a search query or an error, a user is only helped after this long on one page.
    tier0_min_dwell_s: int = Field(
        default=45, ge=0, validation_alias=AliasChoices("TRIAGE_TIER0_MIN_DWELL_S", "tier0_min_dwell_s")
    )
    # Rate limit per user: at most tier0_max_per_window suggestions per tier0_window_s ...
    tier0_max_per_window: int = Field(
        default=3, ge=1, validation_alias=AliasChoices("TRIAGE_TIER0_MAX_PER_WINDOW", "tier0_max_per_window")
    )
    tier0_window_s: int = Field(
        default=3600, ge=1, validation_alias=AliasChoices("TRIAGE_TIER0_WINDOW_S", "tier0_window_s")
    )
    # ... at least this far apart ...
    tier0_min_interval_s: int = Field(
        default=120, ge=0, validation_alias=AliasChoices("TRIAGE_TIER0_MIN_INTERVAL_S", "tier0_min_interval_s")
    )
    # ... and the same document not again to the same user within this.
    tier0_repeat_after_s: int = Field(
        default=86_400, ge=0, validation_alias=AliasChoices("TRIAGE_TIER0_REPEAT_AFTER_S", "tier0_repeat_after_s")
    )
