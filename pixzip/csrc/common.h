/* Shared by the native coder's files: the model structures packed by pixzip/native.py, the limits,
 * and the compiler switches (AVX-512 VNNI target, forced inlining). */
#ifndef PZ_COMMON_H
#define PZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zeroed.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define PZ_X86 1
#endif

#ifdef PZ_X86
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,bmi2,popcnt")))
#endif

typedef struct {
    int32_t ntaps, cin, k4, cout, groups, npad;   /* k4: quads of inputs; npad: a group's padded columns */
    int32_t nruns;                                  /* the taps as runs of consecutive columns of one row */
    const int32_t *run_dy, *run_dx, *run_len;
    const int8_t *w4, *w4_low;                      /* [groups][k4][npad][4]; w4_low: wide weights or NULL */
    const int64_t *bias, *mult, *shift;             /* per column; bias includes the image correction */
    const int64_t *offset;                          /* bias * mult + 2^(shift - 1): requantisation in one step */
    int64_t lo, hi;
    int32_t requant;                                /* 0: the biased accumulator itself (out, skip) */
} PzConv;

typedef struct {
    int32_t channels, hidden, blocks, slope, pad, levels;
    PzConv first, head1, out, skip;
    const PzConv *conv_a, *conv_b;
    const int64_t *read_mult, *read_shift;          /* [blocks + 1]: the int8 ReLU reads of the stream */
    const int64_t *head_mult, *head_shift;          /* [2 * channels]: mu, log-scale per channel */
    const int64_t *skip_mult, *skip_shift;          /* [channels] */
    const int64_t *prefix;                          /* Laplace rows' prefix sums */
    int64_t ls_min, ls_max;                         /* clamp of the log-scale index before - ls_min */
    const uint8_t *symbol_values;
} PzModel;

enum { PRECISION = 24, ROW = 511, MAX_K = 4096, MAX_COLS = 256 };
static const int64_t LOW = (int64_t)1 << PRECISION;
#define INLINE static inline __attribute__((always_inline))

enum { BATCH = 8 };     /* pixels per product: of a row (the encoder), of a wavefront (the decoder) */
enum { MAX_MEMBERS = 4 };    /* models of an ensemble */

#endif
