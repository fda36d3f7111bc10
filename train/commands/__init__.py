"""One module per `rung` subcommand; each exposes `register(subparsers)`."""
