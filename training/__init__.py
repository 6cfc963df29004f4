"""Dataset building, fitting and registering models (later: fine-tuning, evaluation gate, rollout, jobs)."""
