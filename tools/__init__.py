"""Tools that run beside the services, never inside them: each one starts or drives several
services (or none), so none of them belongs to a service's package or image.

- `tools.concierge_evaluation`: the real pipeline (retrieval, triage, escalation, concierge and
  the LLM server, in-process) on labelled questions, shared by the fit and bench/concierge_quality.py;
- `tools.calibrate_concierge`: fits the concierge's confidence (`python -m tools.calibrate_concierge`),
  written where the concierge reads it (services/concierge/fits/);
- `tools.simulate_usage`: usage streams with planted incidents and their ground truth, for
  outreach's detectors (`python -m tools.simulate_usage`).
"""
