/* The integer network of a PixelCNN tile (pixzip/engine.py's arithmetic): products, layers, head
 * outputs, for the decoder's wavefront walk (head_params) and the encoder's dense pass (dense_tile).
 * All static inline: tiles.c and adaptive_tiles.c compile them twice, portable and with AVX-512 VNNI. */
#ifndef PZ_NETWORK_H
#define PZ_NETWORK_H

#include "common.h"

extern int pz_vnni;     /* 1: the AVX-512 VNNI kernel (tiles.c, pz_select_kernel), 0: the portable one */

/* ---- products: acc[0..npad) += x (k4 quads, uint8) . w4 (k4 x npad quads, int8) ---------------------- */

INLINE void dot_plain(const uint8_t *x, const int8_t *w4, int k4, int npad, int32_t *acc) {
    for (int q = 0; q < k4; q++) {
        const uint8_t *xq = x + 4 * q;
        const int8_t *wq = w4 + (size_t)q * npad * 4;
        for (int c = 0; c < npad; c++)
            acc[c] += xq[0] * wq[4 * c] + xq[1] * wq[4 * c + 1] + xq[2] * wq[4 * c + 2] + xq[3] * wq[4 * c + 3];
    }
}


/* A layer's input for P pixels as segments: segment r of pixel k is k4[r] quads at x[r] + k * xstride,
 * its weights the next k4[r] quads of the group's w4 (the taps' runs, or one gathered vector). */
typedef struct {
    int n;
    size_t xstride;
    const uint8_t *x[64];
    int k4[64];
} Segments;

/* One segment: the P pixels' taps gathered into `scratch`, a zero-padded vector of `len` bytes (k4 quads) each */
INLINE void gathered(Segments *sg, const uint8_t *scratch, size_t len, int k4) {
    sg->n = 1;
    sg->xstride = len;
    sg->x[0] = scratch;
    sg->k4[0] = k4;
}

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
        gathered(&sg, scratch, len, cv->k4);
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

/* Group g's requantised outputs of P pixels' accumulators, as bytes (an int8 buffer's [0, 127]): pixel k's
 * at out + k * out_step. */
INLINE void requant_bytes(const PzConv *cv, int32_t (*acc)[MAX_COLS], int P, int g, int vnni, uint8_t *out,
                          size_t out_step) {
    int n = cv->cout / cv->groups, first = g * n;
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

/* Group g's outputs of a requantised layer for P pixels of a wavefront (as products()), as bytes */
INLINE void layer_bytes(const PzConv *cv, const uint8_t *buf, size_t centre, int64_t stride, int64_t pstep, int P,
                        int g, int vnni, uint8_t *scratch, uint8_t *out, size_t out_step) {
    int32_t acc[BATCH][MAX_COLS];
    products(cv, cv->w4 + g * (size_t)cv->k4 * cv->npad * 4, buf, centre, stride, pstep, P, vnni, scratch, acc);
    requant_bytes(cv, acc, P, g, vnni, out, out_step);
}

/* The rows of wavefront t (the pixels j + s*i = t) of a tile of h x w: first_row(t, w, s) .. last_row(t, h, s). */
INLINE int first_row(int t, int w, int s) { return t - (w - 1) <= 0 ? 0 : (t - (w - 1) + s - 1) / s; }
INLINE int last_row(int t, int h, int s) { return t / s < h - 1 ? t / s : h - 1; }

/* ---- the tile ---------------------------------------------------------------------------------------- */

/* The walk's buffers. The stream's reads are kept by wavefront, not by column: the layers that read them
 * (the blocks' first convolutions, the head's 1x1) reach `reach` rows up and columns aside, so a pixel reads
 * wavefronts t - reach*(slope + 1) .. t (slope > reach: the decoder's order), and a ring of `slots`
 * wavefronts holds all that can still be read: memory grows with the tile's height, not its area (a tile
 * of 512 with the large network: 3 MB, not 230). Slot (t mod slots) holds wavefront t's pixels by row, so a
 * wavefront's consecutive rows (a batch of pixels) lie side by side. */
typedef struct {
    int h, w, Wp;
    int reach, slots, rows;  /* the reading layers' reach; the ring's wavefronts; rows a slot: h + reach */
    uint8_t *img;            /* (h + pad) x Wp x channels, pixel values, 128 outside */
    uint8_t **reads;         /* blocks + 1 rings slots x rows x hidden: the stream's int8 reads, 0 outside */
    uint8_t **mids;          /* blocks buffers h x hidden: the blocks' inner activations, by row (a */
    uint8_t *head;           /* wavefront has one pixel per row); h x head width: head1's outputs */
} Tile;

/* Where pixel (row, wavefront t) of the reads is, in pixels from a ring's start (t may be below 0: left of
 * the tile; row down to -reach: above it; both read as 0). */
INLINE size_t ring_at(const Tile *tl, int t, int row) {
    int slot = t % tl->slots;
    return (size_t)(slot < 0 ? slot + tl->slots : slot) * tl->rows + row + tl->reach;
}

/* products() for a layer reading a ring of the walk (Tile.reads): P pixels of wavefront t from row i0,
 * each tap a segment of its own (a run's taps lie in different slots), in the run's order (the weights'). */
INLINE void products_ring(const PzConv *cv, const int8_t *w4, const Tile *tl, const uint8_t *ring, int t, int s,
                          int i0, int P, int vnni, uint8_t *scratch, int32_t (*acc)[MAX_COLS]) {
    Segments sg;
    size_t cin = (size_t)cv->cin;
    if (cv->cin % 4 == 0 && cv->ntaps <= 64) {
        sg.n = 0;
        sg.xstride = cin;                                        /* the next pixel: the next row of the slot */
        for (int r = 0; r < cv->nruns; r++)
            for (int u = 0; u < cv->run_len[r]; u++, sg.n++) {
                int dy = cv->run_dy[r], dx = cv->run_dx[r] + u;
                sg.x[sg.n] = ring + ring_at(tl, t + dx + s * dy, i0 + dy) * cin;
                sg.k4[sg.n] = cv->cin / 4;
            }
    } else {
        size_t len = 4 * (size_t)cv->k4;
        for (int k = 0; k < P; k++) {
            uint8_t *x = scratch + k * len;
            size_t n = 0;
            for (int r = 0; r < cv->nruns; r++)
                for (int u = 0; u < cv->run_len[r]; u++, n += cin) {
                    int dy = cv->run_dy[r], dx = cv->run_dx[r] + u;
                    memcpy(x + n, ring + ring_at(tl, t + dx + s * dy, i0 + k + dy) * cin, cin);
                }
            memset(x + n, 0, len - n);
        }
        gathered(&sg, scratch, len, cv->k4);
    }
    DOT_BATCH(vnni, &sg, P, w4, cv->npad, acc);
}

/* layer_bytes() for a layer reading a ring (the blocks' first convolutions) */
INLINE void layer_bytes_ring(const PzConv *cv, const Tile *tl, const uint8_t *ring, int t, int s, int i0, int P, int g,
                             int vnni, uint8_t *scratch, uint8_t *out, size_t out_step) {
    int32_t acc[BATCH][MAX_COLS];
    products_ring(cv, cv->w4 + g * (size_t)cv->k4 * cv->npad * 4, tl, ring, t, s, i0, P, vnni, scratch, acc);
    requant_bytes(cv, acc, P, g, vnni, out, out_step);
}

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
    int n = m->first.cout / m->first.groups, hn = HW / m->head1.groups, s = m->slope, t0 = j0 + s * i0;
    size_t ring = ring_at(tl, t0, i0);                           /* the pixels' reads: P rows of a slot */
    if (g == 0) {            /* new pixels in these rows: no group of them is computed yet */
        for (int b = 0; b < m->blocks; b++) memset(tl->mids[b] + here * H, 0, (size_t)P * H);
        memset(tl->head + here * HW, 0, (size_t)P * HW);
        for (int b = 0; b <= m->blocks; b++) memset(tl->reads[b] + ring * H, 0, (size_t)P * H);
        int k = j0 - (tl->w - 1);                               /* a row's last pixel (k = its offset / s): */
        if (k >= 0 && k % s == 0 && k / s < P)                   /* the columns right of the tile read as 0 */
            for (int d = 1; d <= tl->reach; d++)
                for (int b = 0; b <= m->blocks; b++) memset(tl->reads[b] + ring_at(tl, t0 + d, i0 + k / s) * H, 0, H);
    }

    layer(&m->first, tl->img, centre, tl->Wp, cstep, P, g, vnni, scratch, y);     /* the residual stream, 16-bit */
    for (int b = 0; b <= m->blocks; b++) {
        if (b > 0) {                                             /* block b - 1 */
            uint8_t *mid = tl->mids[b - 1];
            layer_bytes_ring(&m->conv_a[b - 1], tl, tl->reads[b - 1], t0, s, i0, P, g, vnni, scratch,
                             mid + here * H + g * n, H);
            layer(&m->conv_b[b - 1], mid, here, 0, 1, P, g, vnni, scratch, t);
            for (int k = 0; k < P; k++)
                for (int c = 0; c < n; c++) {
                    int64_t v = y[k][c] + t[k][c];
                    y[k][c] = v < -32768 ? -32768 : (v > 32767 ? 32767 : v);
                }
        }
        for (int k = 0; k < P; k++)
            stream_read(m, b, y[k], n, tl->reads[b] + (ring + k) * H + g * n, vnni);
    }
    layer_bytes(&m->head1, tl->reads[m->blocks], ring, 0, 1, P, g, vnni, scratch, tl->head + here * HW + g * hn, HW);
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

static void tile_free(Tile *tl, int B) {
    if (tl->reads) for (int b = 0; b <= B; b++) free(tl->reads[b]);
    if (tl->mids) for (int b = 0; b < B; b++) free(tl->mids[b]);
    free(tl->img); free(tl->reads); free(tl->mids); free(tl->head);
}

/* How far the layers reading the stream reach: rows up, columns either side (the blocks' first
 * convolutions; the head's first layer is 1x1) */
static int reads_reach(const PzModel *m) {
    int reach = 0;
    for (int b = 0; b < m->blocks; b++)
        for (int r = 0; r < m->conv_a[b].nruns; r++) {
            const PzConv *cv = &m->conv_a[b];
            int up = -cv->run_dy[r], left = -cv->run_dx[r], right = cv->run_dx[r] + cv->run_len[r] - 1;
            if (up > reach) reach = up;
            if (left > reach) reach = left;
            if (right > reach) reach = right;
        }
    return reach;
}

/* A model's buffers for a tile of h x w (0, or -2 if memory ran out: free with tile_free) */
static int tile_alloc(const PzModel *m, Tile *tl, int h, int w) {
    int pad = m->pad, H = m->hidden, B = m->blocks, reach = reads_reach(m);
    /* slots: a pixel reads back reach * (slope + 1) wavefronts, a part of the threaded walk may run one
     * wavefront ahead of another, and a row's last pixel clears the reach slots after its own */
    *tl = (Tile){h, w, w + 2 * pad, reach, reach * (m->slope + 2) + 3, h + reach, NULL, NULL, NULL, NULL};
    size_t padded = (size_t)(h + pad) * tl->Wp;
    tl->img = malloc(padded * m->channels);
    tl->reads = calloc(B + 1, sizeof(uint8_t *));
    tl->mids = calloc(B > 0 ? B : 1, sizeof(uint8_t *));
    tl->head = calloc((size_t)h * m->head1.cout, 1);
    if (!tl->img || !tl->reads || !tl->mids || !tl->head) return -2;
    memset(tl->img, 128, padded * m->channels);
    for (int b = 0; b <= B; b++)     /* a tap may read them before its pixel's write: zeroed() */
        if (!(tl->reads[b] = zeroed((size_t)tl->slots * tl->rows * H))) return -2;
    for (int b = 0; b < B; b++)
        if (!(tl->mids[b] = calloc((size_t)h * H, 1))) return -2;
    return 0;
}

/* A decoded tile's pixels (h x w x channels) from the first model's padded image buffer. */
INLINE void copy_pixels(const PzModel *m, const Tile *tl, int h, int w, uint8_t *out) {
    for (int i = 0; i < h; i++)
        memcpy(out + (size_t)i * w * m->channels, tl->img + ((size_t)(i + m->pad) * tl->Wp + m->pad) * m->channels,
               (size_t)w * m->channels);
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
        gathered(&sg, scratch, len, cv->k4);
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
        int i_lo = first_row(t, w, s), i_hi = last_row(t, h, s);
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
                int t = j0 + k + s * i, i_lo = first_row(t, w, s);
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

#endif
