"""Exceptions with a meaning for the command line: each becomes one line on stderr and exit code 2."""


class CodecDoctorError(Exception):
    """Base of every error codecdoctor raises on purpose."""


class InputError(CodecDoctorError):
    """The user's input (path, file, option value) cannot be used. Exit code 2, one line."""


class CheckFailed(CodecDoctorError):
    """Raised in strict mode when a live check trips. `.findings` name the violation."""

    def __init__(self, findings, message: str | None = None):
        self.findings = list(findings)
        if message is None:
            first = self.findings[0] if self.findings else None
            message = f"{first.id}: {first.message}" if first else "check failed"
        super().__init__(message)
