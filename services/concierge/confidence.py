"""The answer confidence: a calibrated probability that the reply is right.

It is computed before any generation from the match of the customer's question
to an answer unit (services.concierge.matching.Signals) by a logistic model
fitted on labelled questions (`python -m tools.calibrate_concierge`).

A fit is made for exactly one serving configuration: the answer path, and,
where an LLM writes what the customer reads, the model (its alias names the
quantization) and the prompt version. `Configuration.id` names it; fits live
in `fits/` next to this module (or CONCIERGE_FITS_DIR), one JSON file each,
and the service serves only the fit of the configuration it runs. A tenant
with labelled questions of its own gets its own fit of that configuration
(`fits/tenants/<tenant>/`), since how well a question matches a unit depends
on the knowledge base; other tenants get the default fit. Without a default
fit the service refuses to start, unless told to run uncalibrated: then no
answer passes the gate (every question goes to a human) and every response
says `calibrated: false`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import structlog

from aftercare.type.v1 import answer_pb2
from servicekit import ids
from services.concierge.matching import Signals

log = structlog.get_logger(__name__)

DEFAULT_FITS_DIR = Path(__file__).resolve().parent / "fits"
UNCALIBRATED = "uncalibrated"


# The version of each answer path: a new one whenever what the customer reads is made
# differently, so that no fit serves replies it was not fitted on. unit-v2: a long unit is
# cut to its answering block (excerpts.py), no longer to one sentence.
ANSWER_PATHS = {"unit": "unit-v2", "generative": "generative-v1"}


@dataclass(frozen=True)
class Configuration:
    """What decides the reply a customer reads, and so what a fit is valid for."""

    answer_path: str
    phrasing: str
    # The LLM and prompt count only where the LLM writes the shown text.
    llm_model: str
    prompt_version: str

    @property
    def id(self) -> str:
        parts = [self.answer_path, f"phrasing={self.phrasing}"]
        if self.llm_model:
            parts += [f"model={self.llm_model}", f"prompt={self.prompt_version}"]
        return "|".join(parts)

    @classmethod
    def serving(cls, answer_mode: str, phrasing: str, llm_model: str, prompt_version: str) -> Configuration:
        """The configuration of a concierge answering in `answer_mode` with `phrasing`, where the
        LLM `llm_model` writes with the prompt `prompt_version` (they count only when it writes)."""
        writes = answer_mode == "generative" or phrasing != "off"
        return cls(
            answer_path=ANSWER_PATHS[answer_mode],
            phrasing="free" if answer_mode == "generative" else phrasing,
            llm_model=llm_model if writes else "",
            prompt_version=prompt_version if writes else "",
        )


class CalibrationError(ValueError):
    """A fit that cannot serve, or no fit for the serving configuration."""


@dataclass(frozen=True)
class Calibrator:
    """Logistic regression on standardised signals: p = sigmoid(b + sum w_i (x_i - mean_i) / scale_i)."""

    version: str
    configuration_id: str
    features: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float
    means: tuple[float, ...]
    scales: tuple[float, ...]

    def score(self, signals: Signals) -> float:
        values = signals.features()
        z = self.intercept
        for name, weight, mean, scale in zip(self.features, self.weights, self.means, self.scales, strict=True):
            z += weight * ((values[name] - mean) / scale)
        return round(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z)))), 4)

    def to_json(self, extra: dict[str, object] | None = None) -> str:
        body: dict[str, object] = {
            "version": self.version,
            "configuration_id": self.configuration_id,
            "model": "logistic",
            "features": list(self.features),
            "weights": list(self.weights),
            "intercept": self.intercept,
            "means": list(self.means),
            "scales": list(self.scales),
            **(extra or {}),
        }
        return json.dumps(body, indent=2) + "\n"

    def snapshot(self) -> dict[str, object]:
        """The fit as the JSON mapping a release stores (from_snapshot reads it back)."""
        snapshot: dict[str, object] = json.loads(self.to_json())
        return snapshot

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, object]) -> Calibrator:
        """The fit a release snapshotted; raises CalibrationError like a broken fit file."""
        return cls.from_json(json.dumps(snapshot))

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        try:
            raw = json.loads(text)
            calibrator = cls(
                version=str(raw["version"]),
                configuration_id=str(raw["configuration_id"]),
                features=tuple(str(f) for f in raw["features"]),
                weights=tuple(float(w) for w in raw["weights"]),
                intercept=float(raw["intercept"]),
                means=tuple(float(m) for m in raw["means"]),
                scales=tuple(float(s) for s in raw["scales"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CalibrationError(f"invalid fit file: {error}") from error
        known = set(Signals.__dataclass_fields__)
        lengths = {len(calibrator.features), len(calibrator.weights), len(calibrator.means), len(calibrator.scales)}
        if len(lengths) != 1 or not set(calibrator.features) <= known or any(s <= 0 for s in calibrator.scales):
            raise CalibrationError("invalid fit file: features, weights, means and scales disagree")
        return calibrator


def fit_path(fits_dir: Path, configuration_id: str, tenant_id: str = "") -> Path:
    """Where the fit of a configuration (for one tenant, or the default) lives."""
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in configuration_id) + ".json"
    # The tenant's folder is named safely ("acme:eu" -> "acme%3Aeu"; never "..").
    return fits_dir / "tenants" / ids.file_name(tenant_id) / name if tenant_id else fits_dir / name


def _read_fit(path: Path, configuration: Configuration) -> Calibrator:
    calibrator = Calibrator.from_json(path.read_text())
    if calibrator.configuration_id != configuration.id:
        raise CalibrationError(f"{path} was fitted for {calibrator.configuration_id!r}, not {configuration.id!r}")
    return calibrator


class Confidence:
    """The serving confidence: the fit for the serving configuration, or none (uncalibrated)."""

    def __init__(
        self, configuration: Configuration, calibrator: Calibrator | None,
        tenants: dict[str, Calibrator] | None = None,
    ):
        self.configuration = configuration
        self.calibrator = calibrator
        self.tenants = tenants or {}

    @classmethod
    def load(cls, fits_dir: Path, configuration: Configuration, *, allow_uncalibrated: bool = False) -> Confidence:
        """The fit made for `configuration`; without one, a CalibrationError, or with
        `allow_uncalibrated` a confidence that never lets an answer through."""
        path = fit_path(fits_dir, configuration.id)
        if path.exists():
            tenants = {
                tenant: _read_fit(own, configuration)
                for tenant in sorted(ids.from_file_name(folder.name) for folder in (fits_dir / "tenants").glob("*"))
                if ids.is_id(tenant) and (own := fit_path(fits_dir, configuration.id, tenant)).exists()
            }
            return cls(configuration, _read_fit(path, configuration), tenants)
        if not allow_uncalibrated:
            available = sorted(p.name for p in fits_dir.glob("*.json")) if fits_dir.is_dir() else []
            raise CalibrationError(
                f"no confidence fit for the serving configuration {configuration.id!r} in {fits_dir} "
                f"(fits there: {', '.join(available) or 'none'}): fit one with `python -m "
                "tools.calibrate_concierge`, or set CONCIERGE_ALLOW_UNCALIBRATED=true to run with "
                "every answer handed to a human"
            )
        log.warning("confidence_uncalibrated", configuration=configuration.id)
        return cls(configuration, None)

    @property
    def calibrated(self) -> bool:
        return self.calibrator is not None

    def fit_for(self, tenant_id: str) -> Calibrator | None:
        return self.tenants.get(tenant_id, self.calibrator) if self.calibrator else None

    def version(self, tenant_id: str = "") -> str:
        fit = self.fit_for(tenant_id)
        return fit.version if fit else UNCALIBRATED

    def score(self, tenant_id: str, signals: Signals) -> float:
        """The probability that the reply is right; 0 without a fit (the gate stays closed)."""
        fit = self.fit_for(tenant_id)
        return fit.score(signals) if fit else 0.0

    def proto(
        self, tenant_id: str, score: float, threshold: float, signals: Signals | None
    ) -> answer_pb2.Confidence:
        return answer_pb2.Confidence(
            score=score,
            threshold=threshold,
            signals=[
                answer_pb2.ConfidenceSignal(name=name, value=round(value, 4))
                for name, value in (signals.features().items() if signals else ())
            ],
            calibration_version=self.version(tenant_id),
            calibrated=self.calibrated,
            configuration_id=self.configuration.id,
        )
