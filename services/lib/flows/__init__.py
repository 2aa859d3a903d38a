"""IVR flows: the schema'd document (schemas/flows/), validation on save, a pure
interpreter the orchestrator drives, versioned storage and the simulator behind
`canary-voice flows simulate`."""
