"""A second index.py in another codedir: both must load under the same module name."""


def handler(event, context):
    return {"from": "python3-other"}
