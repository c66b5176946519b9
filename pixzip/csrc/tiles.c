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
 * The adaptive stage's tile coder (the same walk driving csrc/adaptive.c, in threads) is adaptive_tiles.c.
 * Loaded with ctypes (pixzip/native.py); the empty Python module only makes it a valid extension. */
#include "common.h"
#include "network.h"
#include "rans.h"

/* Walk a tile in the decoding order with `nm` models (one, or an ensemble's members: same channels,
 * levels and slope). Decoding (`known` NULL): each symbol from the lanes and words. With `known` (h x w x
 * channels pixel values; one model), no coding: every sub-pixel's head outputs go to `params` (mu16, index)
 * in the decoding order, for the tests' comparison with the engine. (The adaptive stage's walk: walk_adaptive.) */
INLINE int walk_tile(const PzModel *const *ms, int nm, int h, int w, int lanes, int64_t *state,
                     const uint32_t *words, int64_t n_words, uint8_t *out, const uint8_t *known, int64_t *params,
                     int vnni) {
    const PzModel *m = ms[0];
    int C = m->channels, s = m->slope;
    Tile tl[MAX_MEMBERS];
    int status = 0;
    uint8_t *scratch = malloc(BATCH * 4 * (size_t)MAX_K);       /* gathered taps (layers of cin % 4 != 0) */
    for (int k = 0; k < nm; k++) tl[k] = (Tile){0};
    for (int k = 0; k < nm && status == 0; k++) status = tile_alloc(ms[k], &tl[k], h, w);
    if (!scratch) status = -2;
    if (status != 0) goto done;

    int64_t ptr = 0;
    int overrun = 0;
    for (int t = 0; t <= (w - 1) + s * (h - 1); t++) {          /* wavefronts t = j + s*i */
        int i_lo = first_row(t, w, s), i_hi = last_row(t, h, s);
        for (int g = 0; g < C; g++)                              /* then channel, then row */
            for (int i0 = i_lo; i0 <= i_hi; i0 += BATCH) {       /* BATCH rows' head outputs at once */
                int P = i_hi - i0 + 1 < BATCH ? i_hi - i0 + 1 : BATCH;
                int64_t mu16[MAX_MEMBERS][BATCH], idx[MAX_MEMBERS][BATCH];
                for (int k = 0; k < nm; k++)
                    head_params(ms[k], &tl[k], i0, t - s * i0, P, g, vnni, scratch, mu16[k], idx[k]);
                if (!known)              /* the batch's table reads, started together: their misses overlap */
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
    copy_pixels(m, &tl[0], h, w, out);
done:
    for (int k = 0; k < nm; k++) tile_free(&tl[k], ms[k]->blocks);
    free(scratch);
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
        int i_lo = first_row(t, w, s), i_hi = last_row(t, h, s);
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

int pz_vnni = 0;        /* network.h: which kernel the walks and passes take */

/* Decode one tile of h x w pixels with `nm` models (1, or an ensemble's 2..MAX_MEMBERS members with the
 * same channels, levels and slope) from its lanes' states (K of them, updated) and its refill words.
 * Writes h x w x channels pixel values to `out`. Returns 0, -1 if the stream is corrupt (a lane does
 * not end in rANS's initial state, or the words are not used exactly), -2 if memory ran out, -3 for
 * a member count out of range. */
int pz_decode_tile(const PzModel *const *ms, int nm, int h, int w, int lanes, int64_t *state,
                   const uint32_t *words, int64_t n_words, uint8_t *out) {
    if (nm < 1 || nm > MAX_MEMBERS) return -3;
#ifdef PZ_X86
    if (pz_vnni) return walk_vnni(ms, nm, h, w, lanes, state, words, n_words, out, NULL, NULL);
#endif
    return walk_plain(ms, nm, h, w, lanes, state, words, n_words, out, NULL, NULL);
}

/* The head outputs of every sub-pixel of a known tile as the walk computes them, in the decoding order
 * (2 per sub-pixel). */
int pz_tile_params(const PzModel *m, int h, int w, const uint8_t *pixels, int64_t *params) {
#ifdef PZ_X86
    if (pz_vnni) return walk_vnni(&m, 1, h, w, 1, NULL, NULL, 0, NULL, pixels, params);
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
    if (pz_vnni) return encode_vnni(ms, nm, h, w, lanes, pixels, state, words, n_words, total, width, params);
#endif
    return encode_plain(ms, nm, h, w, lanes, pixels, state, words, n_words, total, width, params);
}

/* Which kernel runs: 1 AVX-512 with VNNI, 0 the portable one. `want` -1: the best the CPU has. */
int pz_select_kernel(int want) {
    pz_vnni = 0;
#ifdef PZ_X86
    if (want != 0 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("bmi2"))
        pz_vnni = 1;
#endif
    return pz_vnni;
}

int pz_limits(int which) { return which == 0 ? MAX_K : MAX_COLS; }
