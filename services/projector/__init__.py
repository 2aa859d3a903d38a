"""The projector: voice.call.events -> Postgres projections (the tables the API reads)."""
