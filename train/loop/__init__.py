"""The retraining loop: candidate models from escalation logs behind the promotion gate, and the
gateway simulation that produces such logs from outcome tables."""
