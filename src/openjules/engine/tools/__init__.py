"""The agent's tools, one class each; ``tools_for(phase)`` lists those offered."""
