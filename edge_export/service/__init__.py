"""``lensline-edge serve``: the long-running edge service on live cameras (issue 17)."""
