"""Running studies on Ray Tune: tune wiring, callbacks, stages, runner, sync, submit, the UI."""
