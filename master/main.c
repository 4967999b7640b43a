/* baetyl: the master (SPEC §1-10). Everything is in cli.c and the files it calls. */
#include "cli.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
