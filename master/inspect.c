/* The inspect document (SPEC §10). */
#include "inspect.h"
#include "baetyl/version.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <stdlib.h>
#include <time.h>

const char *inspect_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

json_t *inspect_build(master *m)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char ts[64];
    bt_fmt_time_utc(&now, ts, sizeof ts);
    char *err = master_get_error(m), *ver = master_get_version(m);
    json_t *software =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "os", "linux", "arch", host_arch(), "pwd",
                  m->pwd, "mode", m->engine->ops->name, "bin_version", bt_version, "git_revision",
                  bt_revision, "conf_version", ver ? ver : "", "compiler", inspect_compiler());
    json_t *doc = json_pack("{s:s,s:s,s:o*,s:o*,s:o*,s:o*}", "error", err ? err : "", "time", ts,
                            "software", software, "hardware", host_hardware(m->sampler, m->pwd),
                            "services", master_services_json(m), "volumes", master_volumes_json(m));
    free(err);
    free(ver);
    return doc;
}
