"""The only code that touches the kernel."""
