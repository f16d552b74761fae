"""Grid spec → plan (a DAG of jobs) → execution: train, evaluate, profile, store."""
