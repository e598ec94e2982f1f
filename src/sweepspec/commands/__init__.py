"""One module per subcommand, each exposing one plain function."""
