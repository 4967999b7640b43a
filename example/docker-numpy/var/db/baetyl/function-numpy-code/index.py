"""Chapter 14's kind of function: numpy (Debian's python3-numpy, with its native BLAS and
LAPACK libraries) computes the statistics of the message's `values`."""
import numpy as np


def handler(event, context):
    a = np.array(event.get("values", []), dtype=float)
    if a.size == 0:
        return {"error": "no values"}
    return {
        "count": int(a.size),
        "mean": float(a.mean()),
        "std": float(a.std()),
        # solved by LAPACK: [[2, 1], [1, 3]] x = [3, 5]
        "solve": [float(x) for x in np.linalg.solve([[2, 1], [1, 3]], [3, 5])],
        "numpy": np.__version__,
        "functionName": context.get("functionName"),
    }
