/* Zeroed memory for the native coder's files (tiles, the adaptive stage). */
#ifndef PZ_ZEROED_H
#define PZ_ZEROED_H

#include <stdlib.h>
#include <string.h>

/* Zeroed memory that a lookup or a tap may read before anything writes it, zeroed by writing: calloc's pages may
 * be the shared zero page until written, and that first write would then flush the TLB of every thread of the
 * process (an interrupt each, costly in a VM, while a tile's walk runs in several: csrc/adaptive_tiles.c). */
static inline void *zeroed(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (p) memset(p, 0, bytes);
    return p;
}

#endif
