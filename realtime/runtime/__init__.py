"""Runtime: configuration, the process environment, and many streams sharing one set of models."""
