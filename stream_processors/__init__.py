"""Stream processors: the faust app, the rule engine and the sinks."""

# Its finder serves the compiled judging, if built from these sources.
import frtwatch.compiled  # noqa: F401
