"""Customer accounts, their administrators and the suppression list."""
