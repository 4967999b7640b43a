/* Memory helpers of util.h. */
#include "baetyl/util.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

void bt_heap_trim(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}
