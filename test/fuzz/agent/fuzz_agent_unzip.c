/* libFuzzer target: a volume archive (network input) unzipped into an empty directory.
 * Nothing may crash or leak, and nothing may appear outside that directory: its parent is
 * checked to hold only it after every input. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../../agent/agent.h"
#include "baetyl/util.h"

static char root[64], zip[128], out[128];

static void cleanup(void)
{
    char err[256];
    if (root[0])
        bt_rm_rf(root, err, sizeof err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0]) {
        snprintf(root, sizeof root, "/tmp/btfuzzunzipXXXXXX");
        if (!mkdtemp(root))
            abort();
        atexit(cleanup);
        snprintf(zip, sizeof zip, "%s/in.zip", root);
        snprintf(out, sizeof out, "%s/box/out", root);
        char box[128];
        snprintf(box, sizeof box, "%s/box", root);
        mkdir(box, 0755);
    }
    mkdir(out, 0755);
    FILE *f = fopen(zip, "wb");
    if (!f)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);
    char err[512];
    agent_unzip(zip, out, err, sizeof err);
    /* box must hold out and nothing else */
    char box[128];
    snprintf(box, sizeof box, "%s/box", root);
    DIR *d = opendir(box);
    if (!d)
        abort();
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "out"))
            abort();
    closedir(d);
    bt_rm_rf(out, err, sizeof err);
    return 0;
}
