"""Adapters to agent and robot frameworks; each imports its framework only when imported itself."""
