"""Runs the whole aftercare mesh on one machine: the embedded LLM server, the
five services and the gateway, each its own process, as each will be its own
container in production."""
