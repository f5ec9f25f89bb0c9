"""Stream processors: the faust app, the rule engine and the sinks."""
