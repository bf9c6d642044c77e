from pathlib import Path

from pydantic import AliasChoices, Field

from servicekit.settings import ServiceSettings

_DEFAULT_POLICY = Path(__file__).with_name("policy.default.json")


class TriageSettings(ServiceSettings):
    port: int = 50052
    # Priority weights, risk thresholds and routing rules; read once at start-up.
    policy_file: Path = Field(_DEFAULT_POLICY, validation_alias=AliasChoices("TRIAGE_POLICY_FILE", "policy_file"))
