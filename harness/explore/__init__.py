"""Exploration: Hypothesis state machines over the live environment and the input fuzzer; a
shrunk failing run becomes a normal scenario file that `harness run` replays."""
