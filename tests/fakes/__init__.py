"""Local stand-ins for the outside world (mail servers, APIs) shared by tests and benchmarks."""
