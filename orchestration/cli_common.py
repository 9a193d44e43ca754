"""What every ``lensline`` subcommand shares: the console it prints to."""


def console():
    """A rich console on stdout (imported lazily: ``lensline --help`` stays fast)."""
    from rich.console import Console

    return Console(stderr=False)
