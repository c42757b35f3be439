"""Errors that name what is wrong with the user's input (file, row, column, field)."""


class PatronError(ValueError):
    """Bad input or settings; the CLI prints it as one line and exits 2."""


class SchemaError(PatronError):
    """The input does not fit the purchase-log schema (missing or unmappable columns)."""


class ValidationError(PatronError):
    """Rows failed validation and ``strict`` was set."""
