"""IVR flows: the schema'd document (schemas/flows/), validation on save, a pure
interpreter the orchestrator drives, versioned storage and the simulate command."""
