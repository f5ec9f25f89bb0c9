"""Stream processors: the faust app, the router, the judge and its rule engine."""
