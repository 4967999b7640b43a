"""Volumes and mounts (SPEC §3, §4): paths are relative to the work dir, never leave it, not
even through a symlink a service planted in a writable volume (issue 12.8)."""
import os
import shutil

import pytest

from master_harness import SLEEPER, app_yaml, master, svc, vols  # noqa: F401


@pytest.fixture
def outside():
    d = "/tmp/btm-outside-%d" % os.getpid()
    os.makedirs(d, exist_ok=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def v1_with_planted_link(m, outside):
    """A running app whose writable volume var/db/data holds `out` -> a dir outside."""
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg")], vols("pkg")))
    m.start()
    m.wait_running("a")
    os.makedirs(m.path("var/db/data"), exist_ok=True)
    os.symlink(outside, m.path("var/db/data/out"))


@pytest.mark.parametrize("case", ["volume", "mount"])
def test_planted_symlink_does_not_lead_outside(master, outside, case):
    m = master()
    v1_with_planted_link(m, outside)
    if case == "volume":  # a volume below the link: its directory would be made outside
        v = vols("pkg") + [{"name": "esc", "path": "var/db/data/out/sub"}]
        mounts = [{"name": "pkg", "path": "lib/baetyl/pkg"}, {"name": "esc", "path": "esc"}]
    else:  # a mount below another mount that holds the link: the link would be made outside
        v = vols("pkg") + [{"name": "other", "path": "var/db/other"}]
        mounts = [{"name": "pkg", "path": "lib/baetyl/pkg"}, {"name": "data", "path": "data"},
                  {"name": "other", "path": "data/out/x"}]
    m.app(app_yaml([svc("a", "pkg"), svc("b", "pkg", mounts=mounts)], v, version="v2"),
          rel="var/db/baetyl/ota/v2/application.yml")
    assert m.update(m.path("var/db/baetyl/ota/v2"), trace="tr-esc")[0] == 200
    m.wait_ota_step("tr-esc", ["UPDATED", "ROLLEDBACK", "FAILURE"])
    err = m.inspect()["error"]
    assert "leaves the work dir through the symlink" in err, err
    assert os.listdir(outside) == [], "nothing was made outside the work dir"
    assert m.running_pid("a")


def test_absolute_volume_path_is_an_error_naming_the_field(master):
    m = master()
    m.package("pkg", SLEEPER)
    m.app(app_yaml([svc("a", "pkg")], [{"name": "pkg", "path": "/var/db/baetyl/pkg"},
                                       {"name": "data", "path": "var/db/data"}]))
    r = m.cmd("check")
    assert r.returncode != 0
    assert "volumes[0].path: path (/var/db/baetyl/pkg) must be relative to the work dir" in \
        r.stdout + r.stderr


def test_operator_link_outside_is_followed(master, outside):
    """A volume directory the operator linked to an installed tree still works (only links
    inside a volume, where services write, are refused)."""
    m = master()
    m.package("pkg", SLEEPER, where="pkg-src")
    shutil.copytree(m.path("pkg-src"), os.path.join(outside, "pkg"))
    os.makedirs(m.path("var/db/baetyl"), exist_ok=True)
    os.symlink(os.path.join(outside, "pkg"), m.path("var/db/baetyl/pkg"))
    m.app(app_yaml([svc("a", "pkg")], vols("pkg")))
    m.start()
    assert m.wait_running("a")
