"""Developer tools that are not part of any service (kubectl/helm extraction, ...)."""
