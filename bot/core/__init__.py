"""The core: what happens to a conversation and a key (runtime, intake, key flow, outbox, periodic jobs)."""
