"""Small programs the tests run as child processes (`python -m tests.children.<name>`)."""
