"""What every `tfl` command shares: exit codes and the `--debug` flag."""

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def add_debug(parser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
