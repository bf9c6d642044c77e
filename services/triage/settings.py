from pathlib import Path

from pydantic import AliasChoices, Field

from servicekit.settings import ServiceSettings

_DEFAULT_POLICY = Path(__file__).with_name("policy.default.json")


class TriageSettings(ServiceSettings):
    port: int = 50052
    # Priority weights, risk thresholds and routing rules; read once at start-up.
    policy_file: Path = Field(_DEFAULT_POLICY, validation_alias=AliasChoices("TRIAGE_POLICY_FILE", "policy_file"))
    # Intent models live under <data_dir>/triage/<tenant>/<version>/.
    # Retrain rejects labels with fewer examples than this.
    intent_min_examples_per_label: int = Field(
        5, ge=2, validation_alias=AliasChoices("TRIAGE_INTENT_MIN_EXAMPLES_PER_LABEL", "intent_min_examples_per_label")
    )
    # At most this many examples in one Retrain.
    intent_max_examples: int = Field(
        100_000, ge=10, validation_alias=AliasChoices("TRIAGE_INTENT_MAX_EXAMPLES", "intent_max_examples")
    )
    # A new version is promoted when validation accuracy >= current - this ...
    intent_accuracy_tolerance: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        validation_alias=AliasChoices("TRIAGE_INTENT_ACCURACY_TOLERANCE", "intent_accuracy_tolerance"),
    )
    # ... and validation ECE <= current + this.
    intent_ece_tolerance: float = Field(
        0.01, ge=0.0, le=1.0, validation_alias=AliasChoices("TRIAGE_INTENT_ECE_TOLERANCE", "intent_ece_tolerance")
    )
    # Torch intra-op threads for the encoder (0: torch's default). One is fastest on a small shared CPU.
    torch_threads: int = Field(1, ge=0, validation_alias=AliasChoices("TRIAGE_TORCH_THREADS", "torch_threads"))
