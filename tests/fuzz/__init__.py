"""Hostile-input tests (hardening issue, item 1): hypothesis-driven fuzzing of the central
server's protocol and of a live peer's push listener. Every input must get an error reply or a
clean close; the processes never die, other clients never notice, and memory stays bounded.
docs/reliability.md describes what is covered and the figures measured."""
