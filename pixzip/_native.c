/* The CPU decoder of a PixelCNN tile in one call: the integer engine's arithmetic (pixzip/engine.py)
 * and format v3's rANS lanes (pixzip/rans.py, docs/FORMAT.md), pixel by pixel in the decoding order.
 *
 * Why: decoding is sequential (3 * (w + s*(h-1)) sub-steps per tile) and, run as torch and numpy
 * operations, every sub-step costs ~200 small calls whatever its width (docs/ENGINE.md). Here a
 * sub-step is a loop. The integers are the engine's by construction, and tests/test_native.py checks
 * them against it: int8 products summed in int32 (any order: integer addition is associative),
 * requantisation ((acc + bias) * mult + 2^(shift-1)) >> shift in int64, clamps, table lookups.
 *
 * Layout. A tile's buffers are padded like the engine's canvas (pad rows above, pad columns on each
 * side) so that every tap of a causal kernel is a plain read. The image buffer holds pixel values as
 * uint8; the engine's int8 input is value - 128, so padding (int8 zero) is 128 here, and the products
 * of a layer that reads the image are corrected by -128 * (sum of the column's weights), folded into
 * its bias by the caller. Every other buffer holds values in [0, 127], the same bytes as int8.
 *
 * Products. A layer's weights come as quads: w4[group][q][col][r] = W[4q + r][col of group], columns
 * padded to a multiple of 16 and rows to a multiple of 4 with zeros. That is the operand layout of
 * AVX512-VNNI's vpdpbusd (uint8 x int8, four products summed into int32 per column, 16 columns a
 * register), used when the CPU has it; otherwise a plain loop computes the same sums.
 *
 * Loaded with ctypes (pixzip/native.py); the empty Python module only makes it a valid extension. */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define PZ_X86 1
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

/* ---- products: acc[0..npad) += x (k4 quads, uint8) . w4 (k4 x npad quads, int8) ---------------------- */

INLINE void dot_plain(const uint8_t *x, const int8_t *w4, int k4, int npad, int32_t *acc) {
    for (int q = 0; q < k4; q++) {
        const uint8_t *xq = x + 4 * q;
        const int8_t *wq = w4 + (size_t)q * npad * 4;
        for (int c = 0; c < npad; c++)
            acc[c] += xq[0] * wq[4 * c] + xq[1] * wq[4 * c + 1] + xq[2] * wq[4 * c + 2] + xq[3] * wq[4 * c + 3];
    }
}

#ifdef PZ_X86
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,bmi2,popcnt")))
#endif

enum { BATCH = 8 };     /* pixels per product: of a row (the encoder), of a wavefront (the decoder) */

/* A layer's input for P pixels as segments: segment r of pixel k is k4[r] quads at x[r] + k * xstride,
 * its weights the next k4[r] quads of the group's w4 (the taps' runs, or one gathered vector). */
typedef struct {
    int n;
    size_t xstride;
    const uint8_t *x[64];
    int k4[64];
} Segments;

/* acc[k][0..npad) = the products of P pixels' segments (plain loop) */
INLINE void dot_batch_plain(const Segments *sg, int P, const int8_t *w4, int npad, int32_t (*acc)[MAX_COLS]) {
    for (int k = 0; k < P; k++) {
        const int8_t *w = w4;
        for (int c = 0; c < npad; c++) acc[k][c] = 0;
        for (int r = 0; r < sg->n; r++) {
            dot_plain(sg->x[r] + k * sg->xstride, w, sg->k4[r], npad, acc[k]);
            w += (size_t)sg->k4[r] * npad * 4;
        }
    }
}

#ifdef PZ_X86
/* The same with vpdpbusd: BATCH pixels' sums of 16 columns stay in registers over every segment, so
 * each weight load serves BATCH products (fewer pixels: the per-pixel kernel). */
VNNI_TARGET static inline void dot_batch_vnni(const Segments *sg, int P, const int8_t *w4, int npad,
                                              int32_t (*acc)[MAX_COLS]) {
    size_t step = (size_t)npad * 4;
    if (P != BATCH) {       /* one pixel (the decoder), or a row's last few: four independent sums */
        for (int k = 0; k < P; k++)
            for (int b = 0; b < npad; b += 16) {
                __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
                const int8_t *w = w4 + (size_t)b * 4;
                for (int r = 0; r < sg->n; r++) {     /* vpdpbusd's latency would otherwise bound the loop */
                    const uint8_t *x = sg->x[r] + k * sg->xstride;
                    int q = 0, k4 = sg->k4[r];
                    int32_t x0, x1, x2, x3;
                    for (; q + 4 <= k4; q += 4) {
                        memcpy(&x0, x + 4 * q, 4); memcpy(&x1, x + 4 * q + 4, 4);
                        memcpy(&x2, x + 4 * q + 8, 4); memcpy(&x3, x + 4 * q + 12, 4);
                        a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(x0), _mm512_loadu_si512(w + q * step));
                        a1 = _mm512_dpbusd_epi32(a1, _mm512_set1_epi32(x1), _mm512_loadu_si512(w + (q + 1) * step));
                        a2 = _mm512_dpbusd_epi32(a2, _mm512_set1_epi32(x2), _mm512_loadu_si512(w + (q + 2) * step));
                        a3 = _mm512_dpbusd_epi32(a3, _mm512_set1_epi32(x3), _mm512_loadu_si512(w + (q + 3) * step));
                    }
                    for (; q < k4; q++) {
                        memcpy(&x0, x + 4 * q, 4);
                        a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(x0), _mm512_loadu_si512(w + q * step));
                    }
                    w += k4 * step;
                }
                _mm512_storeu_si512(acc[k] + b, _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
            }
        return;
    }
    for (int b = 0; b < npad; b += 16) {
        __m512i a[BATCH];
        for (int k = 0; k < BATCH; k++) a[k] = _mm512_setzero_si512();
        const int8_t *w = w4 + (size_t)b * 4;
        for (int r = 0; r < sg->n; r++) {
            const uint8_t *x = sg->x[r];
            for (int q = 0; q < sg->k4[r]; q++) {
                __m512i wv = _mm512_loadu_si512(w + q * step);
                int32_t xq;
                for (int k = 0; k < BATCH; k++) {
                    memcpy(&xq, x + k * sg->xstride + 4 * q, 4);
                    a[k] = _mm512_dpbusd_epi32(a[k], _mm512_set1_epi32(xq), wv);
                }
            }
            w += sg->k4[r] * step;
        }
        for (int k = 0; k < BATCH; k++) _mm512_storeu_si512(acc[k] + b, a[k]);
    }
}
#define DOT_BATCH(vnni, sg, P, w, npad, acc) \
    ((vnni) ? dot_batch_vnni(sg, P, w, npad, acc) : dot_batch_plain(sg, P, w, npad, acc))
#else
#define DOT_BATCH(vnni, sg, P, w, npad, acc) dot_batch_plain(sg, P, w, npad, acc)
#endif

/* ---- one layer at one pixel ------------------------------------------------------------------------ */

INLINE int64_t requantize(int64_t z, int64_t mult, int64_t shift, int64_t lo, int64_t hi) {
    int64_t y = (z * mult + (shift > 0 ? (int64_t)1 << (shift - 1) : 0)) >> shift;
    return y < lo ? lo : (y > hi ? hi : y);
}

/* The products of group g of a layer for P pixels of one wavefront: pixel k's taps read `buf` around
 * centre + k * pstep (row stride `stride` pixels; a wavefront's next pixel is one row down and `slope`
 * columns left, or, in the buffers kept by row, the next row). With whole quads per pixel every run of
 * taps is read where it lies; otherwise each pixel's taps are first copied into one zero-padded vector
 * of `scratch` (BATCH of them). */
INLINE void products(const PzConv *cv, const int8_t *w4, const uint8_t *buf, size_t centre, int64_t stride,
                     int64_t pstep, int P, int vnni, uint8_t *scratch, int32_t (*acc)[MAX_COLS]) {
    Segments sg;
    if (cv->cin % 4 == 0 && cv->nruns <= 64) {
        sg.n = cv->nruns;
        sg.xstride = (size_t)(pstep * cv->cin);
        for (int r = 0; r < cv->nruns; r++) {
            sg.x[r] = buf + (centre + cv->run_dy[r] * stride + cv->run_dx[r]) * cv->cin;
            sg.k4[r] = cv->run_len[r] * cv->cin / 4;
        }
    } else {
        size_t len = 4 * (size_t)cv->k4;
        for (int k = 0; k < P; k++) {
            uint8_t *x = scratch + k * len;
            size_t n = 0, at = centre + k * pstep;
            for (int r = 0; r < cv->nruns; r++) {
                size_t run = (size_t)cv->run_len[r] * cv->cin;
                memcpy(x + n, buf + (at + cv->run_dy[r] * stride + cv->run_dx[r]) * cv->cin, run);
                n += run;
            }
            memset(x + n, 0, len - n);
        }
        sg.n = 1;
        sg.xstride = len;
        sg.x[0] = scratch;
        sg.k4[0] = cv->k4;
    }
    DOT_BATCH(vnni, &sg, P, w4, cv->npad, acc);
}

#ifdef PZ_X86
/* y[c] = clamp((acc[c] * mult[c] + offset[c]) >> shift[c], lo, hi), eight columns a register. */
VNNI_TARGET static inline void requant_vnni(const int32_t *acc, const int64_t *mult, const int64_t *offset,
                                            const int64_t *shift, int64_t lo, int64_t hi, int n, int64_t *y) {
    __m512i vlo = _mm512_set1_epi64(lo), vhi = _mm512_set1_epi64(hi);
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        __m512i a = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(acc + c)));
        __m512i z = _mm512_add_epi64(_mm512_mullo_epi64(a, _mm512_loadu_si512(mult + c)), _mm512_loadu_si512(offset + c));
        z = _mm512_srav_epi64(z, _mm512_loadu_si512(shift + c));
        _mm512_storeu_si512(y + c, _mm512_min_epi64(_mm512_max_epi64(z, vlo), vhi));
    }
    for (; c < n; c++) {
        int64_t v = ((int64_t)acc[c] * mult[c] + offset[c]) >> shift[c];
        y[c] = v < lo ? lo : (v > hi ? hi : v);
    }
}

/* requant_vnni's values written as bytes (the int8 buffers' [0, 127]; the walk's (uint8_t) cast) */
VNNI_TARGET static inline void requant_vnni_u8(const int32_t *acc, const int64_t *mult, const int64_t *offset,
                                               const int64_t *shift, int64_t lo, int64_t hi, int n, uint8_t *y) {
    __m512i vlo = _mm512_set1_epi64(lo), vhi = _mm512_set1_epi64(hi);
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        __m512i a = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(acc + c)));
        __m512i z = _mm512_add_epi64(_mm512_mullo_epi64(a, _mm512_loadu_si512(mult + c)), _mm512_loadu_si512(offset + c));
        z = _mm512_min_epi64(_mm512_max_epi64(_mm512_srav_epi64(z, _mm512_loadu_si512(shift + c)), vlo), vhi);
        _mm_storel_epi64((__m128i *)(y + c), _mm512_cvtepi64_epi8(z));
    }
    for (; c < n; c++) {
        int64_t v = ((int64_t)acc[c] * mult[c] + offset[c]) >> shift[c];
        y[c] = (uint8_t)(v < lo ? lo : (v > hi ? hi : v));
    }
}
#endif

/* Group g's outputs of a layer for P pixels of a wavefront (as products()): y[k], requantised, or the
 * biased accumulators. */
INLINE void layer(const PzConv *cv, const uint8_t *buf, size_t centre, int64_t stride, int64_t pstep, int P, int g,
                  int vnni, uint8_t *scratch, int64_t (*y)[MAX_COLS]) {
    int32_t acc[BATCH][MAX_COLS], low[BATCH][MAX_COLS];
    int n = cv->cout / cv->groups, first = g * n;
    size_t part = (size_t)cv->k4 * cv->npad * 4;
    products(cv, cv->w4 + g * part, buf, centre, stride, pstep, P, vnni, scratch, acc);
    if (cv->w4_low) {        /* wide weights (the skip predictor): biased accumulators, no requantisation */
        products(cv, cv->w4_low + g * part, buf, centre, stride, pstep, P, vnni, scratch, low);
        for (int k = 0; k < P; k++)
            for (int c = 0; c < n; c++) y[k][c] = (int64_t)acc[k][c] * 256 + low[k][c] + cv->bias[first + c];
        return;
    }
    for (int k = 0; k < P; k++) {
        if (!cv->requant) {
            for (int c = 0; c < n; c++) y[k][c] = (int64_t)acc[k][c] + cv->bias[first + c];
            continue;
        }
#ifdef PZ_X86
        if (vnni) {
            requant_vnni(acc[k], cv->mult + first, cv->offset + first, cv->shift + first, cv->lo, cv->hi, n, y[k]);
            continue;
        }
#endif
        for (int c = 0; c < n; c++) {
            int64_t v = ((int64_t)acc[k][c] * cv->mult[first + c] + cv->offset[first + c]) >> cv->shift[first + c];
            y[k][c] = v < cv->lo ? cv->lo : (v > cv->hi ? cv->hi : v);
        }
    }
}

#ifdef PZ_X86
/* stream_read's first n - n % 8 values, eight a register; returns how many */
VNNI_TARGET static inline int stream_read_vnni(int64_t rm, int64_t rs, int64_t half, const int64_t *y, int n,
                                               uint8_t *read) {
    __m512i vm = _mm512_set1_epi64(rm), vh = _mm512_set1_epi64(half), zero = _mm512_setzero_si512();
    __m512i top = _mm512_set1_epi64(127), vs = _mm512_set1_epi64(rs);
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        __m512i v = _mm512_max_epi64(_mm512_loadu_si512(y + c), zero);
        v = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mullo_epi64(v, vm), vh), vs);
        _mm_storel_epi64((__m128i *)(read + c), _mm512_cvtepi64_epi8(_mm512_min_epi64(v, top)));
    }
    return c;
}
#endif

/* The ReLU'd int8 read of the 16-bit stream: requantize(max(y, 0), read_mult, read_shift, 0, 127). */
INLINE void stream_read(const PzModel *m, int b, const int64_t *y, int n, uint8_t *read, int vnni) {
    int64_t rm = m->read_mult[b], rs = m->read_shift[b], half = (int64_t)1 << (rs - 1);
    int c = 0;
#ifdef PZ_X86
    if (vnni) c = stream_read_vnni(rm, rs, half, y, n, read);
#endif
    for (; c < n; c++) {
        int64_t v = ((y[c] < 0 ? 0 : y[c]) * rm + half) >> rs;
        read[c] = (uint8_t)(v > 127 ? 127 : v);
    }
}

/* Group g's outputs of a requantised layer for P pixels of a wavefront, as bytes (an int8 buffer's
 * [0, 127]): pixel k's at out + k * out_step. */
INLINE void layer_bytes(const PzConv *cv, const uint8_t *buf, size_t centre, int64_t stride, int64_t pstep, int P,
                        int g, int vnni, uint8_t *scratch, uint8_t *out, size_t out_step) {
    int32_t acc[BATCH][MAX_COLS];
    int n = cv->cout / cv->groups, first = g * n;
    products(cv, cv->w4 + g * (size_t)cv->k4 * cv->npad * 4, buf, centre, stride, pstep, P, vnni, scratch, acc);
    for (int k = 0; k < P; k++) {
        uint8_t *o = out + k * out_step;
#ifdef PZ_X86
        if (vnni) {
            requant_vnni_u8(acc[k], cv->mult + first, cv->offset + first, cv->shift + first, cv->lo, cv->hi, n, o);
            continue;
        }
#endif
        for (int c = 0; c < n; c++) {
            int64_t v = ((int64_t)acc[k][c] * cv->mult[first + c] + cv->offset[first + c]) >> cv->shift[first + c];
            o[c] = (uint8_t)(v < cv->lo ? cv->lo : (v > cv->hi ? cv->hi : v));
        }
    }
}

/* ---- the tile ---------------------------------------------------------------------------------------- */

typedef struct {
    int h, w, Wp;
    uint8_t *img;            /* (h + pad) x Wp x channels, pixel values, 128 outside */
    uint8_t **reads;         /* blocks + 1 buffers (h + pad) x Wp x hidden: the stream's int8 reads */
    uint8_t **mids;          /* blocks buffers h x hidden: the blocks' inner activations, by row (a */
    uint8_t *head;           /* wavefront has one pixel per row); h x head width: head1's outputs */
} Tile;

/* Head outputs (mu16, log-scale index) of channel g for P pixels of one wavefront, (i0 + k, j0 - s k):
 * PixelCNN.step_params. They are independent (each reads earlier wavefronts and earlier channels of
 * itself only), so every layer runs on all P at once: one weight load serves P products. A 1x1 layer
 * reads its pixel's row of a buffer (stride 0); the columns of groups not yet computed there are still
 * 0, as the engine's masked weights would make them count. */
INLINE void head_params(const PzModel *m, Tile *tl, int i0, int j0, int P, int g, int vnni, uint8_t *scratch,
                        int64_t *mu16, int64_t *idx) {
    int64_t y[BATCH][MAX_COLS], t[BATCH][MAX_COLS];
    int pad = m->pad, H = m->hidden, HW = m->head1.cout;
    size_t centre = (size_t)(i0 + pad) * tl->Wp + (j0 + pad), here = (size_t)i0;
    int64_t cstep = tl->Wp - m->slope;                           /* the next pixel in the canvas buffers */
    int n = m->first.cout / m->first.groups, hn = HW / m->head1.groups;
    if (g == 0) {            /* new pixels in these rows: no group of them is computed yet */
        for (int b = 0; b < m->blocks; b++) memset(tl->mids[b] + here * H, 0, (size_t)P * H);
        memset(tl->head + here * HW, 0, (size_t)P * HW);
    }

    layer(&m->first, tl->img, centre, tl->Wp, cstep, P, g, vnni, scratch, y);     /* the residual stream, 16-bit */
    for (int b = 0; b <= m->blocks; b++) {
        if (b > 0) {                                             /* block b - 1 */
            uint8_t *mid = tl->mids[b - 1];
            layer_bytes(&m->conv_a[b - 1], tl->reads[b - 1], centre, tl->Wp, cstep, P, g, vnni, scratch,
                        mid + here * H + g * n, H);
            layer(&m->conv_b[b - 1], mid, here, 0, 1, P, g, vnni, scratch, t);
            for (int k = 0; k < P; k++)
                for (int c = 0; c < n; c++) {
                    int64_t v = y[k][c] + t[k][c];
                    y[k][c] = v < -32768 ? -32768 : (v > 32767 ? 32767 : v);
                }
        }
        for (int k = 0; k < P; k++)
            stream_read(m, b, y[k], n, tl->reads[b] + (centre + k * cstep) * H + g * n, vnni);
    }
    layer_bytes(&m->head1, tl->reads[m->blocks], centre, 0, cstep, P, g, vnni, scratch, tl->head + here * HW + g * hn, HW);
    layer(&m->out, tl->head, here, 0, 1, P, g, vnni, scratch, y);
    layer(&m->skip, tl->img, centre, tl->Wp, cstep, P, g, vnni, scratch, t);
    const int64_t big = (int64_t)1 << 30;
    for (int k = 0; k < P; k++) {
        int64_t mu = requantize(y[k][0], m->head_mult[2 * g], m->head_shift[2 * g], -big, big) + 128 * 16
                     + requantize(t[k][0], m->skip_mult[g], m->skip_shift[g], -big, big);
        int64_t ls = requantize(y[k][1], m->head_mult[2 * g + 1], m->head_shift[2 * g + 1], m->ls_min, m->ls_max);
        mu16[k] = mu < 0 ? 0 : (mu > 255 * 16 ? 255 * 16 : mu);
        idx[k] = ls - m->ls_min;
    }
}

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

enum { MAX_MEMBERS = 4 };

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

static void tile_free(Tile *tl, int B) {
    if (tl->reads) for (int b = 0; b <= B; b++) free(tl->reads[b]);
    if (tl->mids) for (int b = 0; b < B; b++) free(tl->mids[b]);
    free(tl->img); free(tl->reads); free(tl->mids); free(tl->head);
}

/* A model's buffers for a tile of h x w (0, or -2 if memory ran out: free with tile_free) */
static int tile_alloc(const PzModel *m, Tile *tl, int h, int w) {
    int pad = m->pad, H = m->hidden, B = m->blocks;
    *tl = (Tile){h, w, w + 2 * pad, NULL, NULL, NULL, NULL};
    size_t padded = (size_t)(h + pad) * tl->Wp;
    tl->img = malloc(padded * m->channels);
    tl->reads = calloc(B + 1, sizeof(uint8_t *));
    tl->mids = calloc(B > 0 ? B : 1, sizeof(uint8_t *));
    tl->head = calloc((size_t)h * m->head1.cout, 1);
    if (!tl->img || !tl->reads || !tl->mids || !tl->head) return -2;
    memset(tl->img, 128, padded * m->channels);
    for (int b = 0; b <= B; b++)
        if (!(tl->reads[b] = calloc(padded * H, 1))) return -2;
    for (int b = 0; b < B; b++)
        if (!(tl->mids[b] = calloc((size_t)h * H, 1))) return -2;
    return 0;
}

/* Walk a tile in the decoding order with `nm` models (one, or an ensemble's members: same channels,
 * levels and slope). Decoding (`known` NULL): each symbol from the lanes and words. With `known` (h x w
 * x channels pixel values; one model), no coding: every sub-pixel's head outputs go to `params`
 * (mu16, index) in the decoding order, for the tests' comparison with the engine. */
INLINE int walk_tile(const PzModel *const *ms, int nm, int h, int w, int lanes, int64_t *state,
                     const uint32_t *words, int64_t n_words, uint8_t *out, const uint8_t *known, int64_t *params,
                     int vnni) {
    const PzModel *m = ms[0];
    int C = m->channels, s = m->slope;
    Tile tl[MAX_MEMBERS];
    int status = 0;
    uint8_t *scratch = malloc(BATCH * 4 * (size_t)MAX_K);       /* gathered taps (layers of cin % 4 != 0) */
    for (int k = 0; k < nm; k++) tl[k] = (Tile){0, 0, 0, NULL, NULL, NULL, NULL};
    for (int k = 0; k < nm && status == 0; k++) status = tile_alloc(ms[k], &tl[k], h, w);
    if (!scratch) status = -2;
    if (status != 0) goto done;

    int64_t ptr = 0;
    int overrun = 0;
    for (int t = 0; t <= (w - 1) + s * (h - 1); t++) {          /* wavefronts t = j + s*i */
        int i_lo = t - (w - 1) <= 0 ? 0 : (t - (w - 1) + s - 1) / s, i_hi = t / s < h - 1 ? t / s : h - 1;
        for (int g = 0; g < C; g++)                              /* then channel, then row */
            for (int i0 = i_lo; i0 <= i_hi; i0 += BATCH) {       /* BATCH rows' head outputs at once */
                int P = i_hi - i0 + 1 < BATCH ? i_hi - i0 + 1 : BATCH;
                int64_t mu16[MAX_MEMBERS][BATCH], idx[MAX_MEMBERS][BATCH];
                for (int k = 0; k < nm; k++)
                    head_params(ms[k], &tl[k], i0, t - s * i0, P, g, vnni, scratch, mu16[k], idx[k]);
                if (!known)          /* the batch's table reads, started together: their misses overlap */
                    for (int k = 0; k < nm; k++)
                        for (int p = 0; p < P; p++) {
                            const int64_t *row = laplace_row(ms[k], mu16[k][p], idx[k][p]);
                            __builtin_prefetch(row);
                            __builtin_prefetch(row + mu16[k][p] / 16);
                            __builtin_prefetch(row + ms[k]->levels);
                        }
                for (int p = 0; p < P; p++) {                    /* then their symbols, row by row */
                    int i = i0 + p, j = t - s * i, value;
                    if (known) {
                        *params++ = mu16[0][p];
                        *params++ = idx[0][p];
                        value = known[((size_t)i * w + j) * C + g];
                    } else {
                        int64_t *x = &state[i % lanes];
                        int sym;
                        if (nm == 1) {
                            sym = decode_symbol(m, x, mu16[0][p], idx[0][p]);
                        } else {
                            int64_t mu_p[MAX_MEMBERS], idx_p[MAX_MEMBERS];
                            for (int k = 0; k < nm; k++) { mu_p[k] = mu16[k][p]; idx_p[k] = idx[k][p]; }
                            Mix mx;
                            mix_init(&mx, ms, nm, mu_p, idx_p);
                            sym = decode_mixed(&mx, m->levels, x, (int)(mu_p[0] / 16));
                        }
                        if (*x < LOW) {                          /* renormalise: one word */
                            if (ptr < n_words) *x = (*x << 32) | words[ptr];
                            else overrun = 1;
                            ptr++;
                        }
                        value = m->symbol_values[sym];
                    }
                    for (int k = 0; k < nm; k++)
                        tl[k].img[((size_t)(i + ms[k]->pad) * tl[k].Wp + j + ms[k]->pad) * C + g] = (uint8_t)value;
                }
            }
    }
    if (known) goto done;
    if (overrun || ptr != n_words) status = -1;
    for (int k = 0; k < lanes; k++)
        if (state[k] != LOW) status = -1;
    for (int i = 0; i < h; i++)    /* (decoding only: `known` returned above) */
        memcpy(out + (size_t)i * w * C, tl[0].img + ((size_t)(i + m->pad) * tl[0].Wp + m->pad) * C, (size_t)w * C);
done:
    for (int k = 0; k < nm; k++) tile_free(&tl[k], ms[k]->blocks);
    free(scratch);
    return status;
}

/* ---- encoding: a dense pass, row by row, BATCH pixels per product ------------------------------------
 *
 * The encoder knows every pixel, so it need not follow the decoding order: it computes each row of the
 * tile layer by layer, BATCH pixels of the row at a time (one weight load serves BATCH products), all
 * channel groups of a layer at once. The integers are the walk's: a masked weight that reads a channel
 * the decoder does not know yet is zero, so the value the dense pass sees there changes no sum. Layers
 * read only rows at or above their own (causal taps, dy <= 0), so the stream's reads live in a ring of
 * pad + 1 rows: memory does not grow with the tile's height. */

/* products() for P consecutive pixels of a row: pixel k's tap (dy, dx) is rows[dy + pad] at column
 * col0 + k + dx (padded columns). With whole quads per pixel every run of taps is read where it lies;
 * otherwise `scratch` holds BATCH gathered, zero-padded vectors. */
INLINE void products_batch(const PzConv *cv, const int8_t *w4, const uint8_t *const *rows, int pad, int col0, int P,
                           int vnni, uint8_t *scratch, int32_t (*acc)[MAX_COLS]) {
    Segments sg;
    if (cv->cin % 4 == 0 && cv->nruns <= 64) {
        sg.n = cv->nruns;
        sg.xstride = (size_t)cv->cin;
        for (int r = 0; r < cv->nruns; r++) {
            sg.x[r] = rows[pad + cv->run_dy[r]] + (size_t)(col0 + cv->run_dx[r]) * cv->cin;
            sg.k4[r] = cv->run_len[r] * cv->cin / 4;
        }
    } else {
        size_t len = 4 * (size_t)cv->k4;
        for (int k = 0; k < P; k++) {
            uint8_t *x = scratch + k * len;
            size_t n = 0;
            for (int r = 0; r < cv->nruns; r++) {
                size_t run = (size_t)cv->run_len[r] * cv->cin;
                memcpy(x + n, rows[pad + cv->run_dy[r]] + (size_t)(col0 + k + cv->run_dx[r]) * cv->cin, run);
                n += run;
            }
            memset(x + n, 0, len - n);
        }
        sg.n = 1;
        sg.xstride = len;
        sg.x[0] = scratch;
        sg.k4[0] = cv->k4;
    }
    DOT_BATCH(vnni, &sg, P, w4, cv->npad, acc);
}

/* layer() for P pixels and every group: y[k][0..cout), or for a requantised layer with `bytes`, pixel
 * k's values as bytes at bytes + k * cout (an int8 buffer's row) */
INLINE void layer_batch(const PzConv *cv, const uint8_t *const *rows, int pad, int col0, int P, int vnni,
                        uint8_t *scratch, int64_t (*y)[MAX_COLS], uint8_t *bytes) {
    int32_t acc[BATCH][MAX_COLS], low[BATCH][MAX_COLS];
    int n = cv->cout / cv->groups;
    size_t part = (size_t)cv->k4 * cv->npad * 4;
    for (int g = 0; g < cv->groups; g++) {
        int first = g * n;
        products_batch(cv, cv->w4 + g * part, rows, pad, col0, P, vnni, scratch, acc);
        if (cv->w4_low) {
            products_batch(cv, cv->w4_low + g * part, rows, pad, col0, P, vnni, scratch, low);
            for (int k = 0; k < P; k++)
                for (int c = 0; c < n; c++) y[k][first + c] = (int64_t)acc[k][c] * 256 + low[k][c] + cv->bias[first + c];
            continue;
        }
        for (int k = 0; k < P; k++) {
            if (!cv->requant) {
                for (int c = 0; c < n; c++) y[k][first + c] = (int64_t)acc[k][c] + cv->bias[first + c];
                continue;
            }
#ifdef PZ_X86
            if (vnni && bytes) {
                requant_vnni_u8(acc[k], cv->mult + first, cv->offset + first, cv->shift + first, cv->lo, cv->hi, n,
                                bytes + (size_t)k * cv->cout + first);
                continue;
            }
            if (vnni) {
                requant_vnni(acc[k], cv->mult + first, cv->offset + first, cv->shift + first, cv->lo, cv->hi, n,
                             y[k] + first);
                continue;
            }
#endif
            for (int c = 0; c < n; c++) {
                int64_t v = ((int64_t)acc[k][c] * cv->mult[first + c] + cv->offset[first + c]) >> cv->shift[first + c];
                v = v < cv->lo ? cv->lo : (v > cv->hi ? cv->hi : v);
                if (bytes) bytes[(size_t)k * cv->cout + first + c] = (uint8_t)v;
                else y[k][first + c] = v;
            }
        }
    }
}

/* Head outputs of P pixels of row i from column j0: mu16[k][g], idx[k][g] (head_params' integers). */
INLINE void dense_params(const PzModel *m, const uint8_t *img, uint8_t *const *ring, int Wp, int i, int j0, int P,
                         int vnni, uint8_t *scratch, int64_t (*mu16)[4], int64_t (*idx)[4]) {
    int64_t y[BATCH][MAX_COLS], t[BATCH][MAX_COLS];
    uint8_t mid[BATCH * MAX_COLS], head[BATCH * MAX_COLS];
    const uint8_t *img_rows[16], *rows[16] = {0}, *below[16], *here[1];
    int pad = m->pad, H = m->hidden, C = m->channels, R = pad + 1, col0 = j0 + pad;
    for (int d = 0; d <= pad; d++) img_rows[d] = img + (size_t)(i + d) * Wp * C;   /* row i - pad + d */

    layer_batch(&m->first, img_rows, pad, col0, P, vnni, scratch, y, NULL);
    for (int b = 0; b <= m->blocks; b++) {
        for (int d = 0; d <= pad; d++) {                /* reads b - 1 (the block's input), b (its output) */
            below[d] = rows[d];
            rows[d] = ring[b] + (size_t)((i - pad + d + R) % R) * Wp * H;
        }
        if (b > 0) {
            layer_batch(&m->conv_a[b - 1], below, pad, col0, P, vnni, scratch, NULL, mid);
            here[0] = mid;
            layer_batch(&m->conv_b[b - 1], here, 0, 0, P, vnni, scratch, t, NULL);
            for (int k = 0; k < P; k++)
                for (int c = 0; c < H; c++) {
                    int64_t v = y[k][c] + t[k][c];
                    y[k][c] = v < -32768 ? -32768 : (v > 32767 ? 32767 : v);
                }
        }
        for (int k = 0; k < P; k++) stream_read(m, b, y[k], H, (uint8_t *)rows[pad] + (size_t)(col0 + k) * H, vnni);
    }
    layer_batch(&m->head1, rows, pad, col0, P, vnni, scratch, NULL, head);   /* rows: the last read's */
    here[0] = head;
    layer_batch(&m->out, here, 0, 0, P, vnni, scratch, y, NULL);
    layer_batch(&m->skip, img_rows, pad, col0, P, vnni, scratch, t, NULL);
    const int64_t big = (int64_t)1 << 30;
    for (int k = 0; k < P; k++)
        for (int g = 0; g < C; g++) {
            int64_t mu = requantize(y[k][2 * g], m->head_mult[2 * g], m->head_shift[2 * g], -big, big) + 128 * 16
                         + requantize(t[k][g], m->skip_mult[g], m->skip_shift[g], -big, big);
            int64_t ls = requantize(y[k][2 * g + 1], m->head_mult[2 * g + 1], m->head_shift[2 * g + 1], m->ls_min, m->ls_max);
            mu16[k][g] = mu < 0 ? 0 : (mu > 255 * 16 ? 255 * 16 : mu);
            idx[k][g] = ls - m->ls_min;
        }
}

/* The decoding order's position of each sub-pixel, by wavefront: first_of[t] = pixels before wavefront
 * t, so (i, j, g) is at first_of[t] * C + g * (pixels of t) + (i - its first row). T + 1 entries. */
static void wavefront_starts(int h, int w, int s, int64_t *first_of) {
    first_of[0] = 0;
    for (int t = 0; t < (w - 1) + s * (h - 1) + 1; t++) {
        int i_lo = t - (w - 1) <= 0 ? 0 : (t - (w - 1) + s - 1) / s, i_hi = t / s < h - 1 ? t / s : h - 1;
        first_of[t + 1] = first_of[t] + (i_hi - i_lo + 1);
    }
}

/* The dense pass over a tile of known pixels: every sub-pixel's head outputs (mu16, index) into
 * `params`, at its place in the decoding order. 0, or -2 if memory ran out. */
INLINE int dense_tile(const PzModel *m, int h, int w, const uint8_t *pixels, const int64_t *first_of,
                      int64_t *params, int vnni) {
    int C = m->channels, pad = m->pad, s = m->slope, H = m->hidden, B = m->blocks, R = pad + 1, Wp = w + 2 * pad;
    int status = -2;
    uint8_t *img = malloc((size_t)(h + pad) * Wp * C), *scratch = malloc(BATCH * 4 * (size_t)MAX_K);
    uint8_t **ring = calloc(B + 1, sizeof(uint8_t *));
    if (!img || !scratch || !ring) goto done;
    for (int b = 0; b <= B; b++)
        if (!(ring[b] = calloc((size_t)R * Wp * H, 1))) goto done;
    memset(img, 128, (size_t)(h + pad) * Wp * C);
    for (int i = 0; i < h; i++)
        memcpy(img + ((size_t)(i + pad) * Wp + pad) * C, pixels + (size_t)i * w * C, (size_t)w * C);
    for (int i = 0; i < h; i++) {
        for (int b = 0; b <= B; b++) memset(ring[b] + (size_t)(i % R) * Wp * H, 0, (size_t)Wp * H);
        for (int j0 = 0; j0 < w; j0 += BATCH) {
            int P = w - j0 < BATCH ? w - j0 : BATCH;
            int64_t mu16[BATCH][4], idx[BATCH][4];
            dense_params(m, img, ring, Wp, i, j0, P, vnni, scratch, mu16, idx);
            for (int k = 0; k < P; k++) {
                int t = j0 + k + s * i, i_lo = t - (w - 1) <= 0 ? 0 : (t - (w - 1) + s - 1) / s;
                int64_t count = first_of[t + 1] - first_of[t];
                for (int g = 0; g < C; g++) {
                    size_t at = (size_t)(first_of[t] * C + g * count + (i - i_lo));
                    params[2 * at] = mu16[k][g];
                    params[2 * at + 1] = idx[k][g];
                }
            }
        }
    }
    status = 0;
done:
    if (ring) for (int b = 0; b <= B; b++) free(ring[b]);
    free(img); free(scratch); free(ring);
    return status;
}

/* Encode a tile of known pixels (h x w x channels values) with `nm` models (one, or an ensemble's
 * members) into `lanes` rANS lanes: the dense pass gives every sub-pixel's head outputs in the
 * decoding order (wavefront, channel, row), the tables give each symbol's interval; then the lanes
 * run backwards over that order (rANS is a stack), and the words the renormalisations wrote are kept
 * in the order the decoder reads them. Outputs: `state` (lanes), `words` (room for one per sub-pixel)
 * and their count, each sub-pixel's table total and symbol width (the ideal bits, reported by the
 * caller), or, with `params` (2 per sub-pixel; one model), only the head outputs, for the tests. */
INLINE int encode_tile(const PzModel *const *ms, int nm, int h, int w, int lanes, const uint8_t *pixels,
                       int64_t *state, uint32_t *words, int64_t *n_words, int32_t *total, int32_t *width,
                       int64_t *params, int vnni) {
    const PzModel *m = ms[0];
    int C = m->channels, s = m->slope, T = (w - 1) + s * (h - 1) + 1;
    size_t n = (size_t)h * w * C;
    int status = -2;
    int64_t *first_of = malloc(sizeof(int64_t) * (T + 1));
    int64_t *own = params ? NULL : malloc(sizeof(int64_t) * 2 * n * nm);
    int32_t *lo = params ? NULL : malloc(sizeof(int32_t) * n), *freq = params ? NULL : malloc(sizeof(int32_t) * n);
    uint8_t *wrote = params ? NULL : malloc(n);
    uint32_t *word = params ? NULL : malloc(sizeof(uint32_t) * n);
    if (!first_of || (!params && (!own || !lo || !freq || !wrote || !word))) goto done;
    wavefront_starts(h, w, s, first_of);
    if (params) {
        status = dense_tile(m, h, w, pixels, first_of, params, vnni);
        goto done;
    }
    for (int k = 0; k < nm; k++)
        if (dense_tile(ms[k], h, w, pixels, first_of, own + 2 * n * k, vnni) != 0) goto done;

    /* each symbol's interval, and the lanes backwards over the decoding order (row i: lane i % lanes) */
    for (int k = 0; k < lanes; k++) state[k] = LOW;
    size_t at = n;
    for (int t = T - 1; t >= 0; t--) {
        int i_lo = t - (w - 1) <= 0 ? 0 : (t - (w - 1) + s - 1) / s, i_hi = t / s < h - 1 ? t / s : h - 1;
        for (int g = C - 1; g >= 0; g--)
            for (int i = i_hi; i >= i_lo; i--) {
                int v = pixels[((size_t)i * w + (t - s * i)) * C + g];
                at--;
                int64_t mu16[MAX_MEMBERS], idx[MAX_MEMBERS];
                for (int k = 0; k < nm; k++) {
                    mu16[k] = own[2 * n * k + 2 * at];
                    idx[k] = own[2 * n * k + 2 * at + 1];
                }
                Mix mx;              /* one model is the mixture of one: q(k) = floor(C(k) 2^24 / S) */
                mix_init(&mx, ms, nm, mu16, idx);
                int64_t q0 = mix_cum(&mx, v), q1 = mix_cum(&mx, v + 1);
                lo[at] = (int32_t)q0;
                freq[at] = (int32_t)(q1 - q0);
                /* the ideal bits are reported from the table coded: a model's own, or the mixture */
                total[at] = (int32_t)(nm == 1 ? mx.total[0] : LOW);
                width[at] = (int32_t)(nm == 1 ? mx.p[0][v + 1] - mx.p[0][v] : q1 - q0);
                int64_t *x = &state[i % lanes], f = freq[at];
                wrote[at] = *x >= (f << 32);
                if (wrote[at]) {
                    word[at] = (uint32_t)*x;
                    *x >>= 32;
                }
                int64_t q = *x / f;
                *x = (q << PRECISION) + (*x - q * f) + lo[at];
            }
    }
    int64_t count = 0;
    for (size_t a = 0; a < n; a++)
        if (wrote[a]) words[count++] = word[a];
    *n_words = count;
    status = 0;
done:
    free(first_of); free(own); free(lo); free(freq); free(wrote); free(word);
    return status;
}

/* The same code compiled twice: for any CPU, and for x86-64 with AVX-512 and VNNI. */
static int walk_plain(const PzModel *const *ms, int nm, int h, int w, int lanes, int64_t *state, const uint32_t *words,
                      int64_t n_words, uint8_t *out, const uint8_t *known, int64_t *params) {
    return walk_tile(ms, nm, h, w, lanes, state, words, n_words, out, known, params, 0);
}

static int encode_plain(const PzModel *const *ms, int nm, int h, int w, int lanes, const uint8_t *pixels,
                        int64_t *state, uint32_t *words, int64_t *n_words, int32_t *total, int32_t *width,
                        int64_t *params) {
    return encode_tile(ms, nm, h, w, lanes, pixels, state, words, n_words, total, width, params, 0);
}

#ifdef PZ_X86
VNNI_TARGET static int walk_vnni(const PzModel *const *ms, int nm, int h, int w, int lanes, int64_t *state,
                                 const uint32_t *words, int64_t n_words, uint8_t *out, const uint8_t *known,
                                 int64_t *params) {
    return walk_tile(ms, nm, h, w, lanes, state, words, n_words, out, known, params, 1);
}

VNNI_TARGET static int encode_vnni(const PzModel *const *ms, int nm, int h, int w, int lanes, const uint8_t *pixels,
                                   int64_t *state, uint32_t *words, int64_t *n_words, int32_t *total, int32_t *width,
                                   int64_t *params) {
    return encode_tile(ms, nm, h, w, lanes, pixels, state, words, n_words, total, width, params, 1);
}
#endif

static int use_vnni = 0;

/* Decode one tile of h x w pixels with `nm` models (1, or an ensemble's 2..MAX_MEMBERS members with the
 * same channels, levels and slope) from its lanes' states (K of them, updated) and its refill words.
 * Writes h x w x channels pixel values to `out`. Returns 0, -1 if the stream is corrupt (a lane does
 * not end in rANS's initial state, or the words are not used exactly), -2 if memory ran out, -3 for
 * a member count out of range. */
int pz_decode_tile(const PzModel *const *ms, int nm, int h, int w, int lanes, int64_t *state,
                   const uint32_t *words, int64_t n_words, uint8_t *out) {
    if (nm < 1 || nm > MAX_MEMBERS) return -3;
#ifdef PZ_X86
    if (use_vnni) return walk_vnni(ms, nm, h, w, lanes, state, words, n_words, out, NULL, NULL);
#endif
    return walk_plain(ms, nm, h, w, lanes, state, words, n_words, out, NULL, NULL);
}

/* The head outputs of every sub-pixel of a known tile as the walk computes them, in the decoding order
 * (2 per sub-pixel). */
int pz_tile_params(const PzModel *m, int h, int w, const uint8_t *pixels, int64_t *params) {
#ifdef PZ_X86
    if (use_vnni) return walk_vnni(&m, 1, h, w, 1, NULL, NULL, 0, NULL, pixels, params);
#endif
    return walk_plain(&m, 1, h, w, 1, NULL, NULL, 0, NULL, pixels, params);
}

/* Encode one tile of h x w known pixels with `nm` models (as pz_decode_tile): the lanes' final states
 * (K of them), the refill words in the decoder's reading order (room for h * w * channels) and their
 * count, and per sub-pixel (decoding order) its table's total and its symbol's width (for the ideal
 * bits). With `params` instead (2 per sub-pixel; one model), the dense pass's head outputs only: the
 * tests compare them with the walk's. Returns 0, -2 if memory ran out, -3 as pz_decode_tile. */
int pz_encode_tile(const PzModel *const *ms, int nm, int h, int w, int lanes, const uint8_t *pixels, int64_t *state,
                   uint32_t *words, int64_t *n_words, int32_t *total, int32_t *width, int64_t *params) {
    if (nm < 1 || nm > MAX_MEMBERS) return -3;
#ifdef PZ_X86
    if (use_vnni) return encode_vnni(ms, nm, h, w, lanes, pixels, state, words, n_words, total, width, params);
#endif
    return encode_plain(ms, nm, h, w, lanes, pixels, state, words, n_words, total, width, params);
}

/* Which kernel runs: 1 AVX-512 with VNNI, 0 the portable one. `want` -1: the best the CPU has. */
int pz_select_kernel(int want) {
    use_vnni = 0;
#ifdef PZ_X86
    if (want != 0 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("bmi2"))
        use_vnni = 1;
#endif
    return use_vnni;
}

int pz_limits(int which) { return which == 0 ? MAX_K : MAX_COLS; }

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pxnative", "pixzip's native decoder (ctypes)", -1, NULL};
PyMODINIT_FUNC PyInit__pxnative(void) { return PyModule_Create(&module); }
