/* libFuzzer target: a volume archive (network input) unzipped into an empty directory.
 * Nothing may crash or leak, and nothing may appear outside that directory: its parent is
 * checked to hold only it after every input. */
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../../agent/agent.h"

static char root[64], zip[128], out[128];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)f;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static void cleanup(void)
{
    if (root[0])
        nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
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
    nftw(out, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
