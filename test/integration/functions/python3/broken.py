"""A module that cannot be imported (a missing dependency): its runtime exits at start."""
raise ImportError("No module named 'numpy_for_test'")


def handler(event, context):
    return event
