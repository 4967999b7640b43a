"""Chapter 14 in docker mode (example/docker-numpy): the Python runtime image is a minimal
Debian root, so a Dockerfile FROM it installs Debian's python3-numpy (native BLAS and LAPACK
libraries) with apt, and a function of that derived image, called by the function-manager
for a message on the hub, imports numpy and answers. The derived image is built on the run's
own engine, whose containers have no bridge to the outside: its build uses the host's
network to reach the Debian mirror (a user's engine needs nothing of the kind)."""
import json
import os
import re
import shutil

import pytest

from conftest import SRC, free_port, wait_for
from test_docker_examples import Client
from test_master_docker import (TAG, dinspect, dmaster, docker, docker_engine, images,  # noqa: F401
                                labelled, master_id, no_leftovers)
from master_harness import master  # noqa: F401

EXAMPLE = os.path.join(SRC, "example", "docker-numpy")
NUMPY_IMAGE = f"baetyl-function-python-numpy:{TAG}"
# what apt prints when the mirror cannot be reached: the test cannot run here then
NO_MIRROR = re.compile(r"Temporary failure resolving|Could not resolve|Unable to connect|"
                       r"Failed to fetch|Network is unreachable")


@pytest.fixture(scope="session")
def numpy_image(images):  # noqa: F811
    images.build_images("baetyl-function-manager", "baetyl-function-python", tag=TAG)
    if ("numpy", TAG) not in images.built:
        r = docker("build", "-q", "--network", "host",
                   "--build-arg", f"BASE=baetyl-function-python:{TAG}", "-t", NUMPY_IMAGE,
                   os.path.join(EXAMPLE, "image"), timeout=600)
        if r.returncode != 0 and NO_MIRROR.search(r.stderr):
            pytest.skip(f"no Debian mirror reachable from this machine: {r.stderr[-300:]}")
        assert r.returncode == 0, r.stderr
        images.built.add(("numpy", TAG))
    return images


def test_numpy_function_in_a_derived_runtime_image(dmaster, numpy_image):
    m = dmaster()
    port = free_port()
    shutil.copytree(os.path.join(EXAMPLE, "var"), m.path("var"), dirs_exist_ok=True)
    app = m.read("var/db/baetyl/application.yml")
    app = app.replace("- 1883:1883", f"- 127.0.0.1:{port}:1883")
    for img in ("baetyl-hub", "baetyl-function-manager", "baetyl-function-python-numpy"):
        assert f"image: {img}\n" in app, img
        app = app.replace(f"image: {img}\n", f"image: {img}:{TAG}\n")
    m.app(app)
    m.start()
    wait_for(lambda: "rule connected to the hub" in
             m.read("var/db/baetyl/function-manager-log/service.log", ""), 60,
             what="the function-manager's rule connected to localhub")
    c = Client(port, "test", "hahaha")
    try:
        c.sub("t/stats")
        c.pub("t", b'{"values": [1, 2, 3, 4]}')
        out = json.loads(c.wait("t/stats", 60))
    finally:
        c.close()
    assert out["count"] == 4 and out["mean"] == 2.5, out
    assert abs(out["std"] - 1.118033988749895) < 1e-9, out
    assert [round(x, 9) for x in out["solve"]] == [0.8, 1.4], out
    assert out["functionName"] == "numpy-stats"
    # numpy is Debian's package, installed by apt in the derived image
    r = docker("run", "--rm", "--entrypoint", "dpkg-query", NUMPY_IMAGE, "-W", "-f",
               "${Version}", "python3-numpy")
    assert r.returncode == 0 and out["numpy"] in r.stdout, r.stdout + r.stderr
    inst = labelled("service=function-numpy-stats")
    assert len(inst) == 1 and dinspect(inst[0])["Config"]["Image"] == NUMPY_IMAGE
    assert m.stop() == 0
    assert labelled(f"baetyl-master={master_id(m.dir)}") == []
