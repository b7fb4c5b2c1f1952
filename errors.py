"""The one exception type for bad user input.

Everything a user can get wrong (an unknown name, an invalid number, a run directory that exists,
a corrupted checkpoint) raises :class:`MemarlError` with a one-line message naming the problem;
the CLI prints it and exits with code 2.
"""


class MemarlError(ValueError):
    """Bad input: the message is one line that names what was wrong."""


class TrainingInterrupted(Exception):
    """Raised by training after SIGINT/SIGTERM, once the final checkpoint is written."""

    def __init__(self, run_dir):
        super().__init__(f"interrupted; checkpoint saved, continue with --resume {run_dir}")
        self.run_dir = run_dir
