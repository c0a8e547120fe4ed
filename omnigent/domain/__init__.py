"""Pure logic: no I/O, no Ray. Everything here has fast unit tests."""
