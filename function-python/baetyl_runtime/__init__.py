"""The Baetyl Python 3 function runtime (bin/baetyl-function-python)."""
