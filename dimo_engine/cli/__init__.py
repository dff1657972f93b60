"""The `dimo` command line: one module per subcommand, loaded only when that subcommand runs."""
