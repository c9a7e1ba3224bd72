"""The controller: networks, containers, their attachments, and reconciliation with the kernel."""
