"""Persona files (JSON), shipped as package data."""
