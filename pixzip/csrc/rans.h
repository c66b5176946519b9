/* rANS symbols of format v3 from the Laplace tables' prefix sums, one model or a mixture (static inline:
 * the tile walks in tiles.c inline them). */
#ifndef PZ_RANS_H
#define PZ_RANS_H

#include "common.h"

/* Where the Laplace table of (mu16, log-scale index) starts in the model's prefix sums: C(k) = p[k] - p[0]
 * (engine.laplace_start). */
INLINE const int64_t *laplace_row(const PzModel *m, int64_t mu16, int64_t idx) {
    return m->prefix + (idx * 16 + mu16 % 16) * ROW + (255 - mu16 / 16);
}

/* One rANS symbol from the Laplace table of (mu16, idx): rans.decode_step for one lane. */
INLINE int decode_symbol(const PzModel *m, int64_t *x, int64_t mu16, int64_t idx) {
    const int64_t *p = laplace_row(m, mu16, idx);
    int64_t base = p[0], total = p[m->levels] - base;
    int64_t slot = *x & (LOW - 1);
    int64_t bound = ((slot + 1) * total + LOW - 1) >> PRECISION;     /* C(k) < bound <=> q(k) <= slot */
    /* the last k with C(k) < bound: C(0) = 0 < bound <= C(levels). Searched outwards from the
     * likeliest value (mu16 / 16), where nearly every symbol is: few reads, all in one or two cache
     * lines of the large prefix table; any search finds the same k (C is strictly increasing). */
    int lo, hi, k = (int)(mu16 / 16), step = 1;
    if (p[k] - base < bound) {                                       /* the answer is >= k */
        lo = k;
        for (hi = k + 1; hi < m->levels && p[hi] - base < bound; step *= 2) { lo = hi; hi = k + step * 2 < m->levels ? k + step * 2 : m->levels; }
    } else {                                                         /* the answer is < k */
        hi = k;
        for (lo = k - 1; lo > 0 && p[lo] - base >= bound; step *= 2) { hi = lo; lo = k - step * 2 > 0 ? k - step * 2 : 0; }
    }
    while (hi - lo > 1) {                                            /* C(lo) < bound <= C(hi) */
        int mid = (lo + hi) / 2;
        if (p[mid] - base < bound) lo = mid; else hi = mid;
    }
    int64_t q0 = ((p[lo] - base) << PRECISION) / total, q1 = ((p[lo + 1] - base) << PRECISION) / total;
    *x = (q1 - q0) * (*x >> PRECISION) + slot - q0;
    return lo;
}

/* ---- mixtures: several models' tables averaged -----------------------------------------------------
 *
 * An ensemble codes with the equal-weight mixture of its members' Laplace tables. Each member's table
 * is first scaled to the coder's total, q_m(k) = floor(C_m(k) * 2^24 / S_m) (strictly increasing: the
 * scale is >= 1), and the mixture is C(k) = floor(sum_m q_m(k) / n): strictly increasing again (the
 * sum grows by >= n a step) and C(levels) = 2^24, so the coder takes it as is. */


typedef struct {
    int n;
    const int64_t *p[MAX_MEMBERS];     /* each member's row in its prefix table, and its base and total */
    int64_t base[MAX_MEMBERS], total[MAX_MEMBERS];
} Mix;

INLINE void mix_init(Mix *mx, const PzModel *const *ms, int n, const int64_t *mu16, const int64_t *idx) {
    mx->n = n;
    for (int k = 0; k < n; k++) {
        mx->p[k] = laplace_row(ms[k], mu16[k], idx[k]);
        mx->base[k] = mx->p[k][0];
        mx->total[k] = mx->p[k][ms[k]->levels] - mx->base[k];
    }
}

INLINE int64_t mix_cum(const Mix *mx, int v) {
    int64_t sum = 0;
    for (int k = 0; k < mx->n; k++) sum += ((mx->p[k][v] - mx->base[k]) << PRECISION) / mx->total[k];
    return sum / mx->n;
}

/* One rANS symbol from a mixture (total 2^24: q(k) <= slot <=> C(k) <= slot), searched outwards from
 * the first member's likeliest value. */
INLINE int decode_mixed(const Mix *mx, int levels, int64_t *x, int start) {
    int64_t slot = *x & (LOW - 1);
    int lo, hi, step = 1;
    if (mix_cum(mx, start) <= slot) {
        lo = start;
        for (hi = start + 1; hi < levels && mix_cum(mx, hi) <= slot; step *= 2) { lo = hi; hi = start + step * 2 < levels ? start + step * 2 : levels; }
    } else {
        hi = start;
        for (lo = start - 1; lo > 0 && mix_cum(mx, lo) > slot; step *= 2) { hi = lo; lo = start - step * 2 > 0 ? start - step * 2 : 0; }
    }
    while (hi - lo > 1) {                                            /* C(lo) <= slot < C(hi) */
        int mid = (lo + hi) / 2;
        if (mix_cum(mx, mid) <= slot) lo = mid; else hi = mid;
    }
    int64_t q0 = mix_cum(mx, lo), q1 = mix_cum(mx, lo + 1);
    *x = (q1 - q0) * (*x >> PRECISION) + slot - q0;
    return lo;
}

#endif
