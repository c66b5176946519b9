/* The adaptive entropy stage in C: pixzip/entropy/adaptive.py's integers (that file is the specification
 * and explains every step; the names here follow it). Right shifts of negative numbers are arithmetic
 * (floor), as Python's >>: what gcc, clang and MSVC do. */
#include "adaptive.h"
#include "zeroed.h"

#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#define INLINE static inline __attribute__((always_inline))
/* The per-sub-pixel entry points are also compiled for AVX2 where the toolchain can pick a clone at load
 * time (glibc's ifunc); integer arithmetic gives the same results either way (tests compare with Python). */
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__)
#define PZ_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PZ_CLONES
#endif

enum { PROB_ONE = 4096, ST_MAX = 2047, NODES = 32, CHECK_SLOT = 0, BIAS_INPUT = 256, W_LIMIT = 1 << 19 };
enum { NODE_ZERO = 1, NODE_SIGN = 2 };
enum { MATCH_BITS = 20, MATCH_OUTSIDE = 256, MATCH_CENTRE_IDX = 14 };   /* adaptive_features: the match's table slots
                                                                        * (2^bits), a value outside the tile, its scale */
static const uint32_t COUNTER_INIT = (uint32_t)1 << 31;       /* probability 1/2 (22 bits) << 10, count 0 */

enum {
    F_ZERO, F_IDX, F_IDX2, F_IDX8, F_FRAC, F_CH, F_BRIGHT,
    F_QRW, F_QRN, F_QRNW, F_QRNE, F_QRWW, F_QRNN, F_QR1, F_QR2, F_ACT, F_GRAD,
    F_DW, F_DN, F_DNW, F_DNE, F_DPLANE, F_DNNE, F_DAVG, F_DWNE, F_DNN, F_DWW, F_DCW, F_DCN,
    F_RW, F_RN, F_R1, F_QRWP, F_QRNP, F_QR1U, F_LMS, F_LMSU, F_DWX, F_DNX, F_DNEX, F_DNWX, F_VOTE, F_VX,
    F_OLS, F_OLSU, F_VW, F_VN, F_VNW, F_VNE, F_VP, F_VWN, F_VNWNE, F_VWW, F_VNN, F_T1, F_T2, F_T3, F_MX, F_MHIT
};

/* ---- logistic tables -------------------------------------------------------------------------------- */

static const int32_t SQUASH_POINTS[33] = {1, 2, 4, 6, 10, 17, 27, 45, 74, 120, 194, 311, 488, 747, 1102, 1546, 2048,
                                          2550, 2994, 3349, 3608, 3785, 3902, 3976, 4022, 4051, 4069, 4079, 4086,
                                          4090, 4092, 4094, 4095};
static int16_t STRETCH[PROB_ONE];
static uint32_t SPREAD[256];       /* bit k of a byte -> nibble k: the vote's hits counted eight at once */
static int32_t RECIP[1024];

INLINE int32_t squash(int32_t d) {
    if (d > ST_MAX) d = ST_MAX;
    if (d < -ST_MAX) d = -ST_MAX;
    int32_t w = d & 127, k = (d >> 7) + 16;
    return (SQUASH_POINTS[k] * (128 - w) + SQUASH_POINTS[k + 1] * w + 64) >> 7;
}

/* Built once when the library is loaded, before any thread can code. */
__attribute__((constructor)) static void build_tables(void) {
    int p = 0;
    for (int d = -ST_MAX; d <= ST_MAX; d++)
        for (int v = squash(d); p <= v; p++) STRETCH[p] = (int16_t)d;
    for (; p < PROB_ONE; p++) STRETCH[p] = ST_MAX;
    for (int n = 0; n < 1024; n++) RECIP[n] = (1 << 17) / (2 * n + 3);
    for (int m = 0; m < 256; m++)
        for (int k = 0; k < 8; k++) SPREAD[m] |= (uint32_t)((m >> k) & 1) << (4 * k);
}

INLINE int32_t clampi(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }
INLINE int bitlen(uint32_t u) { return u ? 32 - __builtin_clz(u) : 0; }

INLINE int qres(int r) {
    int a = r < 0 ? -r : r;
    int b = a == 0 ? 0 : (bitlen((uint32_t)(a - 1)) + 1 < 7 ? bitlen((uint32_t)(a - 1)) + 1 : 7);
    return r < 0 ? -b : b;
}

INLINE int qlog(int u) {
    if (u == 0) return 0;
    int b = bitlen((uint32_t)(u - 1)) + 1;
    return b < 10 ? b : 10;
}

/* ---- the state -------------------------------------------------------------------------------------- */

struct PzAdaptive {
    PzLevel lv;
    int bits;                       /* blocks per context table: 2^bits */
    uint32_t *tables;               /* [context][block][NODES]: slot 0 the check, then the nodes */
    int32_t *weights[AD_MAX_MIXERS];   /* [node][selector value][contexts + 1] */
    int32_t *final;                 /* [node][mixers] */
    uint16_t *apm[AD_MAX_APMS];     /* [node][selector value][33] */
    int32_t lms_w[4][AD_LMS_INPUTS];   /* the residual predictor's weights per channel (16.16) */
    int32_t lms_u[AD_LMS_INPUTS], lms_pred;   /* its inputs and prediction (1/16) for the sub-pixel being coded */
    /* the least-squares predictor (adaptive_features.LeastSquares) per channel: A's upper triangle (within
     * 2^30 by the decay), b, the weights (16.16), the channel's count; the inputs and prediction in hand */
    int32_t ols_A[4][AD_OLS_INPUTS][AD_OLS_INPUTS];
    int64_t ols_b[4][AD_OLS_INPUTS];
    int32_t ols_w[4][AD_OLS_INPUTS], ols_u[AD_OLS_INPUTS], ols_pred;
    int32_t ols_count[4];
    uint16_t *match;                /* the match model's table (adaptive_features.MATCH_BITS): value + 1, 0 none */
    int64_t bytes;
};

/* a mixer's inputs (adaptive.learned_layout): the contexts, the network, the bias, and the shifted table */
static int mixer_inputs(const PzLevel *lv) { return lv->n_contexts + 2 + (lv->shifted != 0); }

static int level_ok(const PzLevel *lv) {
    if (lv->n_contexts < 1 || lv->n_contexts > AD_MAX_CONTEXTS || lv->n_mixers < 1 || lv->n_mixers > AD_MAX_MIXERS
        || lv->n_apms < 1 || lv->n_apms > AD_MAX_APMS || lv->max_table_bits < 10 || lv->max_table_bits > 24
        || lv->counter_limit < 0 || lv->counter_limit > 1023 || lv->apm_rate < 1 || lv->apm_rate > 15
        || lv->mixer_rate < 0 || lv->mixer_rate > 64 || lv->final_rate < 0 || lv->final_rate > 64
        || lv->lms < 0 || lv->lms > 12 || lv->vote < 0 || lv->vote > 5 || lv->ols < 0 || lv->ols > 1
        || lv->shifted < 0 || lv->shifted > lv->ols || lv->classical < 0 || lv->classical > 1
        || lv->template_bits < 0 || lv->template_bits > 1 || lv->match < 0 || lv->match > 2
        || lv->bitwise < 0 || lv->bitwise > 1
        || lv->mixer_init < -W_LIMIT || lv->mixer_init > W_LIMIT || lv->net_init < -W_LIMIT || lv->net_init > W_LIMIT)
        return 0;
    for (int k = 0; k < lv->n_contexts; k++) {
        if (lv->ctx_len[k] < 1 || lv->ctx_len[k] > 4) return 0;
        for (int f = 0; f < lv->ctx_len[k]; f++)
            if (lv->ctx_feature[k][f] < 0 || lv->ctx_feature[k][f] >= AD_N_FEATURES) return 0;
    }
    for (int m = 0; m < lv->n_mixers; m++)
        if (lv->mixer_feature[m] < 0 || lv->mixer_feature[m] >= AD_N_FEATURES || lv->mixer_size[m] < 1
            || lv->mixer_size[m] > 256) return 0;
    for (int a = 0; a < lv->n_apms; a++)
        if (lv->apm_feature[a] < 0 || lv->apm_feature[a] >= AD_N_FEATURES || lv->apm_size[a] < 1
            || lv->apm_size[a] > 256) return 0;
    return 1;
}

/* adaptive.table_bits */
static int table_bits(const PzLevel *lv, int64_t n) {
    int b = 0;
    while (b < 63 && ((int64_t)1 << b) <= n) b++;     /* n.bit_length() */
    b -= 2;
    return b < 10 ? 10 : (b > lv->max_table_bits ? lv->max_table_bits : b);
}

/* Zeroed memory for the context tables, on 2 MB pages where the system gives them: the tables are read
 * at random, and with 4 KB pages nearly every read would also miss the TLB (measured: a quarter of the
 * stage's time waited on the blocks' prefetches). */
static void *table_alloc(size_t bytes) {
    void *p = NULL;
    size_t huge = (size_t)1 << 21;
    if (bytes >= huge) {
        if (posix_memalign(&p, huge, (bytes + huge - 1) / huge * huge) != 0) return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, (bytes + huge - 1) / huge * huge, MADV_HUGEPAGE);
#endif
        memset(p, 0, bytes);
        return p;
    }
    return zeroed(bytes);
}

void pz_adaptive_free(PzAdaptive *st) {
    if (!st) return;
    free(st->tables);
    for (int m = 0; m < AD_MAX_MIXERS; m++) free(st->weights[m]);
    for (int a = 0; a < AD_MAX_APMS; a++) free(st->apm[a]);
    free(st->final);
    free(st->match);
    free(st);
}

/* A fresh state for a level, sized for n_subpixels (adaptive.State); NULL if the level is invalid or
 * memory ran out. Tables start empty (check 0 matches no context), weights and APMs at their initial
 * values (adaptive.py creates them on first use with the same values). */
static int64_t learned(PzAdaptive *st, int32_t *buf, int load);

PzAdaptive *pz_adaptive_new(const PzLevel *lv, int64_t n_subpixels) {
    if (!level_ok(lv)) return NULL;
    PzAdaptive *st = calloc(1, sizeof(PzAdaptive));
    if (!st) return NULL;
    st->lv = *lv;
    st->bits = table_bits(lv, n_subpixels);
    size_t slots = (size_t)lv->n_contexts * ((size_t)1 << st->bits) * NODES;
    st->tables = table_alloc(slots * sizeof(uint32_t));
    st->final = malloc(sizeof(int32_t) * NODES * lv->n_mixers);
    st->bytes = (int64_t)(slots * sizeof(uint32_t));
    if (!st->tables || !st->final) goto fail;
    if (lv->match) {
        if (!(st->match = zeroed(sizeof(uint16_t) << MATCH_BITS))) goto fail;
        st->bytes += (int64_t)sizeof(uint16_t) << MATCH_BITS;
    }
    for (int k = 0; k < NODES * lv->n_mixers; k++) st->final[k] = 65536 / lv->n_mixers;
    int n = lv->n_contexts, inputs = mixer_inputs(lv);   /* the contexts, the network, the bias[, the shifted table] */
    int32_t net = lv->shifted ? lv->net_init >> 1 : lv->net_init;   /* split between the two tables (State._initial) */
    for (int m = 0; m < lv->n_mixers; m++) {
        size_t sets = (size_t)NODES * lv->mixer_size[m];
        if (!(st->weights[m] = malloc(sizeof(int32_t) * sets * inputs))) goto fail;
        for (size_t s = 0; s < sets; s++)
            for (int k = 0; k < inputs; k++) st->weights[m][s * inputs + k] = k < n ? lv->mixer_init : (k == n + 1 ? 0 : net);
        st->bytes += (int64_t)(sizeof(int32_t) * sets * inputs);
    }
    for (int a = 0; a < lv->n_apms; a++) {
        size_t sets = (size_t)NODES * lv->apm_size[a];
        if (!(st->apm[a] = malloc(sizeof(uint16_t) * sets * 33))) goto fail;
        for (size_t s = 0; s < sets; s++)
            for (int k = 0; k < 33; k++) st->apm[a][s * 33 + k] = (uint16_t)(squash((k - 16) * 128) * 16);
        st->bytes += (int64_t)(sizeof(uint16_t) * sets * 33);
    }
    if (lv->prior) {                 /* the level's prior: its length checked, its values bounded */
        if (lv->prior_len != learned(st, NULL, 0)) goto fail;
        for (int64_t k = 0; k < lv->prior_len; k++)
            if (lv->prior[k] < -W_LIMIT || lv->prior[k] > W_LIMIT) goto fail;
        learned(st, (int32_t *)lv->prior, 1);
    }
    st->lv.prior = NULL;             /* copied: the caller's array is not read again */
    return st;
fail:
    pz_adaptive_free(st);
    return NULL;
}

int32_t pz_level_size(void) { return (int32_t)sizeof(PzLevel); }

int64_t pz_adaptive_memory(const PzAdaptive *st) { return st->bytes; }

int ad_reads_network(const PzAdaptive *st) { return !st->lv.classical; }

/* The learned small state in one int32 order (adaptive.State.learned): each mixer's weight sets
 * [node][selector value][input], the final mixer's [node][mixer], each APM's [node][selector value][33].
 * load: from buf into the state (a level's prior), else from the state into buf. Returns the count. */
static int64_t learned(PzAdaptive *st, int32_t *buf, int load) {
    const PzLevel *lv = &st->lv;
    size_t inputs = (size_t)mixer_inputs(lv);
    int64_t k = 0;
    for (int m = 0; m < lv->n_mixers; m++)
        for (size_t q = 0; q < (size_t)NODES * lv->mixer_size[m] * inputs; q++, k++)
            if (buf) { if (load) st->weights[m][q] = buf[k]; else buf[k] = st->weights[m][q]; }
    for (size_t q = 0; q < (size_t)NODES * lv->n_mixers; q++, k++)
        if (buf) { if (load) st->final[q] = buf[k]; else buf[k] = st->final[q]; }
    for (int a = 0; a < lv->n_apms; a++)
        for (size_t q = 0; q < (size_t)NODES * lv->apm_size[a] * 33; q++, k++)
            if (buf) { if (load) st->apm[a][q] = (uint16_t)buf[k]; else buf[k] = st->apm[a][q]; }
    return k;
}

int64_t pz_adaptive_learned(const PzAdaptive *st, int32_t *buf) { return learned((PzAdaptive *)st, buf, 0); }

/* ---- features of a sub-pixel's neighbourhood (adaptive.features) ---------------------------------------- */

/* ---- the residual predictor (adaptive.ResidualPredictor) ---------------------------------------------- */

enum { LMS_W_LIMIT = 1 << 18 };

INLINE int64_t floordiv(int64_t a, int64_t b) {      /* b > 0: Python's a // b */
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* the residual expected from the inputs, in 1/16 grey level, within +-128 levels */
INLINE int lms_predict(const int32_t *w, const int32_t *u) {
    int64_t s = 0;
    for (int k = 0; k < AD_LMS_INPUTS; k++) s += (int64_t)w[k] * u[k];
    s >>= 12;
    return (int)(s < -2048 ? -2048 : (s > 2048 ? 2048 : s));
}

/* value and residual at (i, j, c), or (p, 0) outside the tile */
INLINE void neighbour(const PzAdTile *t, int i, int j, int c, int p, int *v, int *r) {
    if (i < 0 || j < 0 || j >= t->w) {
        *v = p;
        *r = 0;
        return;
    }
    size_t k = ((size_t)i * t->w + j) * t->C + c;
    *v = t->value[k];
    *r = t->res[k];
}

/* adaptive_features.TEMPLATES: level 14's neighbours, (row, column) offsets, each template's count first */
static const int8_t TEMPLATE_SIZE[3] = {10, 6, 12};
static const int8_t TEMPLATE[28][2] = {
    {0, -1}, {0, -2}, {0, -3}, {0, -4}, {-1, -2}, {-1, -1}, {-1, 0}, {-1, 1}, {-1, 2}, {-2, 0},
    {-2, -1}, {-2, 1}, {-1, -3}, {-2, -2}, {-2, 2}, {0, -5},
    {0, -6}, {-1, -4}, {-1, -5}, {-2, -3}, {-2, 3}, {-2, 4}, {-3, -1}, {-3, 0}, {-3, 1}, {-3, 2}, {-3, -2}, {0, -7}};

/* adaptive_features.template_bits: bit k set where the k-th neighbour of the template is inside the tile and not 0 */
INLINE void template_bits(const PzAdTile *t, int i, int j, int c, int *F) {
    int at = 0;
    for (int m = 0; m < 3; m++) {
        int bits = 0;
        for (int k = 0; k < TEMPLATE_SIZE[m]; k++, at++) {
            int y = i + TEMPLATE[at][0], x = j + TEMPLATE[at][1];
            if (y >= 0 && x >= 0 && x < t->w && t->value[((size_t)y * t->w + x) * t->C + c] > 0) bits |= 1 << k;
        }
        F[F_T1 + m] = bits;
    }
}

/* adaptive_features.MATCH_NEIGHBOURS and match_index: the match model's neighbourhood, row 0 from 8 to the left,
 * then rows -1..-5 each from 8 to the left to min(8, 2 x its distance) to the right (decoded at slope 2), hashed
 * in that order (MATCH_OUTSIDE outside the tile) to a slot of the table */
INLINE uint32_t match_value(const PzAdTile *t, int y, int x, int c) {
    return y >= 0 && x >= 0 && x < t->w ? t->value[((size_t)y * t->w + x) * t->C + c] : MATCH_OUTSIDE;
}

INLINE uint32_t match_index(const PzAdTile *t, int i, int j, int c) {
    uint32_t h = (uint32_t)c + 1;
    for (int d = 1; d <= 8; d++) h = h * 0x9E3779B1u + match_value(t, i, j - d, c) + 1;
    for (int r = 1; r <= 5; r++)
        for (int d = -8; d <= (2 * r < 8 ? 2 * r : 8); d++) h = h * 0x9E3779B1u + match_value(t, i - r, j + d, c) + 1;
    return (h * 0x9E3779B1u) >> (32 - MATCH_BITS);
}

/* adaptive_features.match_features: F_MX, the value last seen after this neighbourhood against p (1..31; 0: none),
 * and F_MHIT, how the match's predictions of W, N, NW, NE, WW and NN went (2 bits each: 0 none, 1 right, 2 wrong) */
INLINE void match_features(const PzAdTile *t, int i, int j, int c, int p, uint32_t slot, int *F) {
    static const int8_t AT[6][2] = {{0, -1}, {-1, 0}, {-1, -1}, {-1, 1}, {0, -2}, {-2, 0}};
    int e = t->st->match[slot], hits = 0;
    F[F_MX] = e ? clampi(e - 1 - p, -15, 15) + 16 : 0;
    for (int k = 0; k < 6; k++) {
        int y = i + AT[k][0], x = j + AT[k][1];
        if (y >= 0 && x >= 0 && x < t->w) hits |= t->mhit[((size_t)y * t->w + x) * t->C + c] << (2 * k);
    }
    F[F_MHIT] = hits;
}

/* adaptive_features.match_update: after coding x, whether the match predicted it (mhit), and x as what followed */
INLINE void match_update(PzAdTile *t, uint32_t slot, int i, int j, int c, int x) {
    int e = t->st->match[slot];
    t->mhit[((size_t)i * t->w + j) * t->C + c] = (uint8_t)(e ? (e - 1 == x ? 1 : 2) : 0);
    t->st->match[slot] = (uint16_t)(x + 1);
}

INLINE int rounded_mean(int mu16) { return (mu16 + 8) >> 4 < 255 ? (mu16 + 8) >> 4 : 255; }

/* ---- the least-squares predictor (adaptive_features.LeastSquares, ols_inputs) ---------------------------- */

enum { OLS_N = AD_OLS_INPUTS, OLS_DECAY_EVERY = 16, OLS_DECAY_SHIFT = 7, OLS_SOLVE_EVERY = 128 };
static const int64_t OLS_W_LIMIT = (int64_t)1 << 20, OLS_M_LIMIT = (int64_t)1 << 30, OLS_G_LIMIT = (int64_t)1 << 31;

INLINE int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* neighbour()'s readings as the predictor takes them: a neighbour's difference to p and its residual (0
 * outside the tile), and the earlier channel cc's gradient x_cc - its neighbour (0 outside) */
INLINE int ols_d(const PzAdTile *t, int i, int j, int c, int p) {
    int v, r;
    neighbour(t, i, j, c, p, &v, &r);
    return v - p;
}
INLINE int ols_r(const PzAdTile *t, int i, int j, int c) {
    int v, r;
    neighbour(t, i, j, c, 0, &v, &r);
    return r;
}
INLINE int ols_g(const PzAdTile *t, int i, int j, int di, int dj, int cc) {
    int x = t->value[((size_t)i * t->w + j) * t->C + cc], v, r;
    neighbour(t, i + di, j + dj, cc, x, &v, &r);
    return x - v;
}

/* its inputs at (i, j, c) (ols_inputs) into st->ols_u and its prediction (1/16 level, within +-128 levels) */
INLINE int ols_predict(const PzAdTile *t, int i, int j, int c, int p, int mu16) {
    PzAdaptive *st = t->st;
    int32_t *u = st->ols_u;
    int k = 0;
    static const int8_t DI[10] = {0, -1, -1, -1, 0, -2, -2, -1, -2, -1}, DJ[10] = {-1, 0, -1, 1, -2, 0, 1, -2, -1, 2};
    for (int q = 0; q < 10; q++) u[k++] = ols_d(t, i + DI[q], j + DJ[q], c, p);
    for (int q = 0; q < 6; q++) u[k++] = ols_r(t, i + DI[q], j + DJ[q], c);
    if (c > 0) {
        u[k++] = ols_r(t, i, j, c - 1);
        u[k++] = c > 1 ? ols_r(t, i, j, c - 2) : 0;
        u[k++] = ols_r(t, i, j - 1, c - 1);
        u[k++] = ols_r(t, i - 1, j, c - 1);
        u[k++] = ols_g(t, i, j, 0, -1, c - 1);
        u[k++] = ols_g(t, i, j, -1, 0, c - 1);
        u[k++] = ols_g(t, i, j, -1, -1, c - 1);
        u[k++] = ols_g(t, i, j, -1, 1, c - 1);
        u[k++] = c > 1 ? ols_g(t, i, j, 0, -1, c - 2) + ols_g(t, i, j, -1, 0, c - 2) : 0;
    } else {
        for (int q = 0; q < 9; q++) u[k++] = 0;
    }
    u[k++] = mu16 - 16 * p;
    u[k++] = 16;
    u[k++] = st->lms_pred >> 4;
    const int32_t *w = st->ols_w[c & 3];
    int64_t s = 0;
    for (int q = 0; q < OLS_N; q++) s += (int64_t)w[q] * u[q];
    s >>= 12;
    st->ols_pred = (int32_t)(s < -2048 ? -2048 : (s > 2048 ? 2048 : s));
    return st->ols_pred;
}

/* (A + I) w = b by elimination in int64 (LeastSquares._solve); the weights unchanged where a pivot is not positive */
PZ_CLONES static void ols_solve(PzAdaptive *st, int c) {
    int64_t M[OLS_N][OLS_N + 1];
    for (int i = 0; i < OLS_N; i++) {
        for (int j = 0; j < OLS_N; j++) M[i][j] = i <= j ? st->ols_A[c][i][j] : st->ols_A[c][j][i];
        M[i][i] += 1;
        M[i][OLS_N] = st->ols_b[c][i];
    }
    for (int k = 0; k < OLS_N; k++) {
        int64_t piv = M[k][k];
        if (piv <= 0) return;
        for (int i = k + 1; i < OLS_N; i++) {
            int64_t g = clamp64(floordiv(M[i][k] * 65536, piv), -OLS_G_LIMIT, OLS_G_LIMIT);
            for (int j = k + 1; j <= OLS_N; j++)
                M[i][j] = clamp64(M[i][j] - ((g * M[k][j]) >> 16), -OLS_M_LIMIT, OLS_M_LIMIT);
        }
    }
    int32_t w[OLS_N];
    for (int i = OLS_N - 1; i >= 0; i--) {
        int64_t s = M[i][OLS_N] * 65536;
        for (int j = i + 1; j < OLS_N; j++) s -= M[i][j] * w[j];
        w[i] = (int32_t)clamp64(floordiv(s, M[i][i]), -OLS_W_LIMIT, OLS_W_LIMIT);
    }
    memcpy(st->ols_w[c], w, sizeof(w));
}

/* after a sub-pixel of channel c with residual r: its statistics, their decay, now and then a solve */
INLINE void ols_update(PzAdaptive *st, int c, int r) {
    if (!st->lv.ols) return;
    const int32_t *u = st->ols_u;
    c &= 3;
    for (int a = 0; a < OLS_N; a++) {
        int32_t *row = st->ols_A[c][a];
        for (int b = a; b < OLS_N; b++) row[b] += u[a] * u[b];
        st->ols_b[c][a] += (int64_t)u[a] * r;
    }
    int n = ++st->ols_count[c];
    if (n % OLS_DECAY_EVERY == 0)
        for (int a = 0; a < OLS_N; a++) {
            int32_t *row = st->ols_A[c][a];
            for (int b = a; b < OLS_N; b++) row[b] -= row[b] >> OLS_DECAY_SHIFT;
            st->ols_b[c][a] -= st->ols_b[c][a] >> OLS_DECAY_SHIFT;
        }
    if (n % OLS_SOLVE_EVERY == 0) ols_solve(st, c);
}

INLINE void features(const PzAdTile *t, int i, int j, int c, int mu16, int idx, int *F) {
    int p = rounded_mean(mu16);
    int W, rW, N, rN, NW, rNW, NE, rNE, WW, rWW, NN, rNN, NNE, rNNE;
    neighbour(t, i, j - 1, c, p, &W, &rW);
    neighbour(t, i - 1, j, c, p, &N, &rN);
    neighbour(t, i - 1, j - 1, c, p, &NW, &rNW);
    neighbour(t, i - 1, j + 1, c, p, &NE, &rNE);
    neighbour(t, i, j - 2, c, p, &WW, &rWW);
    neighbour(t, i - 2, j, c, p, &NN, &rNN);
    neighbour(t, i - 2, j + 1, c, p, &NNE, &rNNE);
    F[F_ZERO] = 0;
    F[F_IDX] = idx; F[F_IDX2] = idx >> 1; F[F_IDX8] = idx >> 3;
    F[F_FRAC] = mu16 - 16 * p + 8;
    F[F_CH] = c; F[F_BRIGHT] = p >> 4;
    F[F_QRW] = qres(rW); F[F_QRN] = qres(rN); F[F_QRNW] = qres(rNW); F[F_QRNE] = qres(rNE);
    F[F_QRWW] = qres(rWW); F[F_QRNN] = qres(rNN);
    F[F_ACT] = qlog(abs(rW) + abs(rN) + abs(rNW) + abs(rNE));
    F[F_GRAD] = qlog(abs(W - NW) + abs(N - NW) + abs(NE - N));
    F[F_DW] = qres(W - p); F[F_DN] = qres(N - p); F[F_DNW] = qres(NW - p); F[F_DNE] = qres(NE - p);
    F[F_DPLANE] = qres(clampi(W + N - NW, 0, 255) - p);
    F[F_DNNE] = qres(clampi(N + NE - NNE, 0, 255) - p);
    F[F_DAVG] = qres(((N + NE + 1) >> 1) - p);
    F[F_DWNE] = qres(clampi(W + NE - N, 0, 255) - p);
    F[F_DNN] = qres(clampi(2 * N - NN, 0, 255) - p);
    F[F_DWW] = qres(clampi(2 * W - WW, 0, 255) - p);
    F[F_RW] = clampi(rW, -12, 12); F[F_RN] = clampi(rN, -12, 12);
    F[F_QR1] = F[F_QR2] = F[F_R1] = F[F_DCW] = F[F_DCN] = F[F_QRWP] = F[F_QRNP] = 0;
    if (c > 0) {
        size_t here = ((size_t)i * t->w + j) * t->C;
        int x1 = t->value[here + c - 1], r1 = t->res[here + c - 1];
        int W1, rW1, N1, rN1;
        neighbour(t, i, j - 1, c - 1, p, &W1, &rW1);
        neighbour(t, i - 1, j, c - 1, p, &N1, &rN1);
        F[F_QR1] = qres(r1); F[F_R1] = clampi(r1, -12, 12);
        F[F_QR2] = c > 1 ? qres(t->res[here + c - 2]) : 0;
        F[F_DCW] = j > 0 ? qres(clampi(W + x1 - W1, 0, 255) - p) : 0;
        F[F_DCN] = i > 0 ? qres(clampi(N + x1 - N1, 0, 255) - p) : 0;
        F[F_QRWP] = qres(rW1); F[F_QRNP] = qres(rN1);
    }
    F[F_QR1U] = F[F_QR1] + 7;
    F[F_DWX] = clampi(W - p, -15, 15); F[F_DNX] = clampi(N - p, -15, 15);      /* exact, where small */
    F[F_DNEX] = clampi(NE - p, -15, 15); F[F_DNWX] = clampi(NW - p, -15, 15);
    F[F_LMS] = F[F_LMSU] = 0;
    if (t->st->lv.lms) {
        int32_t *u = t->st->lms_u;
        size_t here = ((size_t)i * t->w + j) * t->C;
        u[0] = rW; u[1] = rN; u[2] = rNW; u[3] = rNE; u[4] = rWW; u[5] = rNN;
        u[6] = c > 0 ? t->res[here + c - 1] : 0;
        u[7] = c > 1 ? t->res[here + c - 2] : 0;
        u[8] = W - p; u[9] = N - p; u[10] = NW - p; u[11] = NE - p;
        int pred = lms_predict(t->st->lms_w[c & 3], u);
        t->st->lms_pred = pred;
        F[F_LMS] = qres(pred >> 2);
        F[F_LMSU] = F[F_LMS] + 7;
    }
    F[F_OLS] = t->st->lv.ols ? qres(ols_predict(t, i, j, c, p, mu16) >> 2) : 0;
    F[F_OLSU] = F[F_OLS] + 7;
    F[F_VW] = W; F[F_VN] = N; F[F_VNW] = NW; F[F_VNE] = NE; F[F_VP] = p;       /* the values themselves */
    F[F_VWN] = W * 256 + N; F[F_VNWNE] = NW * 256 + NE; F[F_VWW] = WW; F[F_VNN] = NN;
    if (t->st->lv.template_bits) template_bits(t, i, j, c, F);
    else F[F_T1] = F[F_T2] = F[F_T3] = 0;
}

/* The exact-predictor vote (adaptive_features.exact_candidates, exact_vote): the candidates' values at
 * (i, j, c), -1 where a neighbour one needs is outside the tile; each one's hits, the exact-masks of W, N, NW,
 * NE, NN, WW and of the pixel's previous channel that have its bit; the first with the most hits is the vote. With
 * at least the level's threshold of hits, F_VOTE names it and its hits and F_VX is its value's difference to
 * p (within +-15), else F_VOTE 0 and F_VX 16. */
INLINE void exact_vote(const PzAdTile *t, int i, int j, int c, int p, int *cand, int *F) {
    const int C = t->C, w = t->w;
    const size_t here = ((size_t)i * w + j) * C + c, up = (size_t)w * C;
    const int in_w = j > 0, in_n = i > 0, in_nw = in_n && in_w, in_ne = in_n && j + 1 < w;
    int W = in_w ? t->value[here - C] : -1, N = in_n ? t->value[here - up] : -1;
    int NW = in_nw ? t->value[here - up - C] : -1, NE = in_ne ? t->value[here - up + C] : -1;
    cand[0] = W; cand[1] = N; cand[2] = NE; cand[3] = NW;
    cand[4] = in_nw ? clampi(W + N - NW, 0, 255) : -1;
    cand[5] = cand[6] = cand[7] = -1;
    if (c > 0) {
        int x1 = t->value[here - 1];
        cand[5] = x1;
        if (in_w) cand[6] = clampi(W + x1 - t->value[here - C - 1], 0, 255);
        if (in_n) cand[7] = clampi(N + x1 - t->value[here - up - 1], 0, 255);
    }
    /* hits of all eight at once: each mask's bit k spread to nibble k, the seven added (at most 7 a nibble) */
    uint32_t hits = (in_w ? SPREAD[t->exact[here - C]] : 0) + (in_n ? SPREAD[t->exact[here - up]] : 0)
                  + (in_nw ? SPREAD[t->exact[here - up - C]] : 0) + (in_ne ? SPREAD[t->exact[here - up + C]] : 0)
                  + (c > 0 ? SPREAD[t->exact[here - 1]] : 0)
                  + (i > 1 ? SPREAD[t->exact[here - 2 * up]] : 0) + (j > 1 ? SPREAD[t->exact[here - 2 * C]] : 0);
    int best = 0, most = -1;
    for (int k = 0; k < AD_CANDIDATES; k++) {
        int n = (hits >> (4 * k)) & 15;
        if (n > most) { best = k; most = n; }
    }
    int threshold = t->st->lv.vote;
    if (most < threshold || cand[best] < 0) {
        F[F_VOTE] = 0;
        F[F_VX] = 16;
        return;
    }
    F[F_VOTE] = 1 + 4 * best + (most - threshold < 3 ? most - threshold : 3);
    F[F_VX] = clampi(cand[best] - p, -15, 15);
}

INLINE int exact_mask(const int *cand, int x) {
    int m = 0;
    for (int k = 0; k < AD_CANDIDATES; k++) m |= (cand[k] == x) << k;
    return m;
}

/* After coding a sub-pixel of channel c with residual r: one normalised LMS step of the residual
 * predictor (adaptive.ResidualPredictor.update). */
INLINE void lms_update(PzAdaptive *st, int c, int r) {
    if (!st->lv.lms) return;
    const int32_t *u = st->lms_u;
    int32_t *w = st->lms_w[c & 3];
    int64_t norm = 16;
    for (int k = 0; k < AD_LMS_INPUTS; k++) norm += (int64_t)u[k] * u[k];
    int64_t err = clampi(16 * r - st->lms_pred, -1024, 1024), g = floordiv(err * 65536, norm);
    for (int k = 0; k < AD_LMS_INPUTS; k++) {
        int64_t v = w[k] + ((g * u[k]) >> (4 + st->lv.lms));
        w[k] = (int32_t)(v < -LMS_W_LIMIT ? -LMS_W_LIMIT : (v > LMS_W_LIMIT ? LMS_W_LIMIT : v));
    }
}

INLINE uint32_t ctx_hash(int k, const int32_t *feat, int len, const int *F) {
    uint32_t h = (uint32_t)(k + 1) * 0x9E3779B1u;
    for (int f = 0; f < len; f++) {
        h = (h + ((uint32_t)F[feat[f]] & 0xFFFF)) * 0x2545F491u;
        h ^= h >> 15;
    }
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    return h ^ (h >> 16);
}

/* ---- one sub-pixel ---------------------------------------------------------------------------------------- */

typedef struct {
    PzAdTile *t;
    const int *F;
    const int64_t *row[2];           /* the network's table (C(k) = row[k] - row[0]), and the shifted one */
    int tables;                      /* 2 at levels with `shifted`, else 1 */
    uint32_t hash[AD_MAX_CONTEXTS];  /* each context's hash (a bitwise level rehashes it for the low nibble) */
    uint32_t *blocks[AD_MAX_CONTEXTS];
} Stage;

/* Context k's block for hash h: found, or (re)initialised with h's check (State.block) */
INLINE uint32_t *block_of(PzAdaptive *st, int k, uint32_t h) {
    uint32_t index = h >> (32 - st->bits), check = (h & 0xFFFF) | 0x10000;
    uint32_t *blk = st->tables + (((size_t)k << st->bits) + index) * NODES;
    if (blk[CHECK_SLOT] != check) {
        for (int s = 1; s < NODES; s++) blk[s] = COUNTER_INIT;
        blk[CHECK_SLOT] = check;
    }
    return blk;
}

enum { LAPLACE_ROW = 511 };

/* where the table of (mu16, idx) starts in the prefix sums (adaptive.laplace_start) */
INLINE const int64_t *laplace_row(const PzAdTile *t, int mu16, int idx) {
    return t->cdf + ((int64_t)idx * 16 + mu16 % 16) * LAPLACE_ROW + (255 - mu16 / 16);
}

INLINE void stage_init(Stage *sg, PzAdTile *t, const int *F, int mu16, int idx) {
    PzAdaptive *st = t->st;
    const PzLevel *lv = &st->lv;
    uint32_t h[AD_MAX_CONTEXTS];
    sg->t = t;
    sg->F = F;
    sg->row[0] = laplace_row(t, mu16, idx);
    __builtin_prefetch(sg->row[0] + mu16 / 16);
    sg->tables = 1;
    if (lv->shifted) {              /* the same scale at p + the least-squares prediction (adaptive.table_starts) */
        int moved = clampi(16 * rounded_mean(mu16) + st->ols_pred, 0, 4080);
        sg->row[1] = laplace_row(t, moved, idx);
        sg->tables = 2;
    }
    for (int k = 0; k < lv->n_contexts; k++) {      /* every block's address first: their misses overlap */
        h[k] = ctx_hash(k, lv->ctx_feature[k], lv->ctx_len[k], F);
        const uint32_t *blk = st->tables + (((size_t)k << st->bits) + (h[k] >> (32 - st->bits))) * NODES;
        __builtin_prefetch(blk);        /* the check and nodes 1..15: most sub-pixels need no other line */
    }
    for (int k = 0; k < lv->n_contexts; k++) sg->blocks[k] = block_of(st, k, sg->hash[k] = h[k]);
}

/* adaptive.nibble_hash: a context's hash for the low nibble's block, with the high nibble */
INLINE uint32_t nibble_hash(uint32_t h, int high) {
    h ^= (uint32_t)(high + 1) * 0x2545F491u;
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    return h ^ (h >> 16);
}

/* _Stage.low_nibble: a bitwise level's blocks for the low nibble's decisions */
INLINE void low_nibble(Stage *sg, int high) {
    PzAdaptive *st = sg->t->st;
    const int n = st->lv.n_contexts;
    uint32_t h[AD_MAX_CONTEXTS];
    for (int k = 0; k < n; k++) {
        h[k] = nibble_hash(sg->hash[k], high);
        __builtin_prefetch(st->tables + (((size_t)k << st->bits) + (h[k] >> (32 - st->bits))) * NODES + 16);
    }
    for (int k = 0; k < n; k++) sg->blocks[k] = block_of(st, k, h[k]);
}

INLINE int32_t dot(const int32_t *ws, const int32_t *xs, int n) {
    int64_t s = 0;
    for (int k = 0; k < n; k++) s += (int64_t)ws[k] * xs[k];
    s >>= 16;
    return (int32_t)(s < -ST_MAX ? -ST_MAX : (s > ST_MAX ? ST_MAX : s));
}

INLINE void train(int32_t *ws, const int32_t *xs, int n, int32_t err) {
    for (int k = 0; k < n; k++) {        /* |x * err| < 2047 * 4096 * 64 < 2^31 - 2^15 (level_ok: rates <= 64) */
        int32_t v = ws[k] + ((xs[k] * err + 0x8000) >> 16);
        ws[k] = v < -W_LIMIT ? -W_LIMIT : (v > W_LIMIT ? W_LIMIT : v);
    }
}

/* ---- the binary arithmetic coder ------------------------------------------------------------------------- */

INLINE uint32_t split(uint32_t x1, uint32_t x2, int p) {
    uint32_t r = x2 - x1;
    return x1 + (r >> 12) * (uint32_t)p + (((r & 0xFFF) * (uint32_t)p) >> 12);
}

INLINE void put_byte(PzAdTile *t, uint8_t b) {
    if (t->len == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 4096;
        uint8_t *buf = realloc(t->buf, (size_t)cap);
        if (!buf) {
            t->failed = 1;
            return;
        }
        t->buf = buf;
        t->cap = cap;
    }
    t->buf[t->len++] = b;
}

INLINE uint8_t get_byte(PzAdTile *t) {
    uint8_t b = t->pos < t->len ? t->buf[t->pos] : 0;
    t->pos++;
    return b;
}

/* Code bit y with probability p (of a 1, in 1/4096), or decode one with y < 0; returns the bit. */
INLINE int code(PzAdTile *t, int p, int y) {
    uint32_t mid = split(t->x1, t->x2, p);
    if (y < 0) y = t->x <= mid;
    if (y) t->x2 = mid;
    else t->x1 = mid + 1;
    while (((t->x1 ^ t->x2) & 0xFF000000u) == 0) {
        if (t->decoding) t->x = (t->x << 8) | get_byte(t);
        else put_byte(t, (uint8_t)(t->x2 >> 24));
        t->x1 <<= 8;
        t->x2 = (t->x2 << 8) | 255;
    }
    return y;
}

/* table r's frequency of the values a..b (_Stage.mass) */
INLINE int64_t mass(const Stage *sg, int r, int a, int b) { return sg->row[r][b + 1] - sg->row[r][a]; }

/* the probability of a 1 that `ones` of `total` give, as a mixer input */
INLINE int32_t table_input(int64_t ones, int64_t total) {
    int64_t q = (ones << 12) / total;
    return STRETCH[q < 1 ? 1 : (q > PROB_ONE - 1 ? PROB_ONE - 1 : q)];
}

/* _Stage.code_bit: one decision at `node` (y < 0: decode it); table r gives a 1 `ones[r]` of `total[r]` */
INLINE int code_bit(Stage *sg, int node, int y, const int64_t *ones, const int64_t *total) {
    PzAdaptive *st = sg->t->st;
    const PzLevel *lv = &st->lv;
    const int *F = sg->F;
    int n = lv->n_contexts, inputs = n + 1 + sg->tables;
    int32_t xs[AD_MAX_CONTEXTS + 3], outs[AD_MAX_MIXERS] = {0};
    int32_t *sets[AD_MAX_MIXERS], *final = NULL;
    uint16_t *tables[AD_MAX_APMS];
    for (int k = 0; k < n; k++) xs[k] = STRETCH[sg->blocks[k][node] >> 20];
    xs[n] = table_input(ones[0], total[0]);
    xs[n + 1] = BIAS_INPUT;
    if (sg->tables > 1) xs[n + 2] = table_input(ones[1], total[1]);
    for (int m = 0; m < lv->n_mixers; m++) {
        sets[m] = st->weights[m] + ((size_t)node * lv->mixer_size[m] + F[lv->mixer_feature[m]]) * inputs;
        outs[m] = dot(sets[m], xs, inputs);
    }
    int32_t mixed = outs[0];
    if (lv->n_mixers > 1) {
        final = st->final + (size_t)node * lv->n_mixers;
        mixed = dot(final, outs, lv->n_mixers);
    }
    int32_t p_mix = squash(mixed), p_apm = 0;
    int32_t s = clampi(mixed, -ST_MAX, ST_MAX) + 2048, lo = s >> 7, w = s & 127;
    for (int a = 0; a < lv->n_apms; a++) {
        tables[a] = st->apm[a] + ((size_t)node * lv->apm_size[a] + F[lv->apm_feature[a]]) * 33;
        p_apm += (tables[a][lo] * (128 - w) + tables[a][lo + 1] * w) >> 11;
    }
    p_apm /= lv->n_apms;
    int p = clampi((p_mix + 3 * p_apm + 2) >> 2, 1, PROB_ONE - 1);

    y = code(sg->t, p, y);

    for (int k = 0; k < n; k++) {
        uint32_t slot = sg->blocks[k][node];
        int64_t q = slot >> 10;
        uint32_t c = slot & 1023;
        q += (((int64_t)y << 22) - q) * RECIP[c] >> 16;
        if ((int)c < lv->counter_limit) c++;
        sg->blocks[k][node] = ((uint32_t)q << 10) | c;
    }
    for (int m = 0; m < lv->n_mixers; m++) train(sets[m], xs, inputs, ((y << 12) - squash(outs[m])) * lv->mixer_rate);
    if (final) train(final, outs, lv->n_mixers, ((y << 12) - p_mix) * lv->final_rate);
    int near = lo + (w >> 6), target = y ? 65535 : 0;
    for (int a = 0; a < lv->n_apms; a++) tables[a][near] += (target - tables[a][near]) >> lv->apm_rate;
    return y;
}

/* table r's frequency of magnitudes a..b on one side of p */
INLINE int64_t side(const Stage *sg, int r, int p, int negative, int a, int b) {
    return negative ? mass(sg, r, p - b, p - a) : mass(sg, r, p + a, p + b);
}

/* _code_subpixel: x in 0..hi binarised around p (x < 0: decoded); returns x. Each decision's ones and total per
 * table. */
INLINE int code_subpixel(Stage *sg, int p, int x, int hi) {
    int dec = x < 0, r = x - p, m = r < 0 ? -r : r, R = sg->tables;
    int64_t ones[2], total[2];
    if (hi == 0) return 0;                   /* one value: nothing to code */
    for (int k = 0; k < R; k++) ones[k] = mass(sg, k, p, p), total[k] = mass(sg, k, 0, hi);
    if (code_bit(sg, NODE_ZERO, dec ? -1 : r == 0, ones, total)) return p;
    int negative = p == hi;
    if (p > 0 && p < hi) {
        for (int k = 0; k < R; k++) ones[k] = mass(sg, k, 0, p - 1), total[k] = ones[k] + mass(sg, k, p + 1, hi);
        negative = code_bit(sg, NODE_SIGN, dec ? -1 : r < 0, ones, total);
    }
    int top = negative ? p : hi - p, e = 0;
    while ((2 << e) <= top) {
        for (int k = 0; k < R; k++)
            ones[k] = side(sg, k, p, negative, 2 << e, top), total[k] = side(sg, k, p, negative, 1 << e, top);
        if (!code_bit(sg, 3 + 7 * negative + e, dec ? -1 : m >= (2 << e), ones, total)) break;
        e++;
    }
    int v = 1 << e;
    for (int b = e - 1; b >= 0; b--) {
        if ((v | (1 << b)) > top) continue;
        int hi = (v | ((2 << b) - 1)) < top ? (v | ((2 << b) - 1)) : top;
        for (int k = 0; k < R; k++)
            ones[k] = side(sg, k, p, negative, v | (1 << b), hi), total[k] = side(sg, k, p, negative, v, hi);
        if (code_bit(sg, 17 + 2 * (e - 1) + (b != e - 1), dec ? -1 : (m >> b) & 1, ones, total)) v |= 1 << b;
    }
    return negative ? p - v : p + v;
}

/* adaptive.node_bit: bit b's node after the bits above it (high = x >> (b + 1)) */
INLINE int node_bit(int b, int high) {
    int k = 3 - (b & 3);
    return (1 << k) + (high & ((1 << k) - 1)) + (b < 4 ? 15 : 0);
}

/* _code_bits: a bitwise level's binarisation, x in 0..hi as its bits, most significant first (x < 0: decoded) */
INLINE int code_bits(Stage *sg, int x, int hi) {
    int dec = x < 0, v = 0, R = sg->tables;
    int64_t ones[2], total[2];
    if (hi == 0) return 0;
    for (int b = 7; b >= 0; b--) {
        if (b == 3) low_nibble(sg, v >> 4);
        int half = 1 << b;
        if (v + half > hi) continue;             /* a 1 would pass hi */
        int top = v + 2 * half - 1 < hi ? v + 2 * half - 1 : hi;
        for (int k = 0; k < R; k++) ones[k] = mass(sg, k, v + half, top), total[k] = mass(sg, k, v, top);
        if (code_bit(sg, node_bit(b, v >> (b + 1)), dec ? -1 : (x >> b) & 1, ones, total)) v += half;
    }
    return v;
}

/* ---- tiles ------------------------------------------------------------------------------------------------ */

static int begin(PzAdTile *t, PzAdaptive *st, int h, int w, int C, const int64_t *cdf) {
    memset(t, 0, sizeof(*t));
    t->st = st;
    t->cdf = cdf;
    t->h = h; t->w = w; t->C = C;
    for (int k = 0; k < 4; k++) t->top[k] = 255;
    t->x2 = 0xFFFFFFFFu;
    t->value = malloc((size_t)h * w * C);
    t->res = malloc(sizeof(int16_t) * (size_t)h * w * C);
    t->exact = st->lv.vote ? calloc((size_t)h * w * C, 1) : NULL;      /* only the vote reads it */
    t->mhit = st->lv.match ? calloc((size_t)h * w * C, 1) : NULL;
    return t->value && t->res && (t->exact || !st->lv.vote) && (t->mhit || !st->lv.match) ? 0 : -2;
}

int ad_begin_encode(PzAdTile *t, PzAdaptive *st, int h, int w, int C, const int64_t *cdf) {
    if (begin(t, st, h, w, C, cdf) != 0) return -2;
    t->cap = 4096;
    t->buf = malloc((size_t)t->cap);
    return t->buf ? 0 : -2;
}

int ad_begin_decode(PzAdTile *t, PzAdaptive *st, int h, int w, int C, const int64_t *cdf, const uint8_t *data,
                    int64_t n) {
    if (begin(t, st, h, w, C, cdf) != 0) return -2;
    t->buf = (uint8_t *)data;        /* read only */
    t->len = n;
    t->decoding = 1;
    for (int k = 0; k < 4; k++) t->x = (t->x << 8) | get_byte(t);
    return 0;
}

INLINE void record(PzAdTile *t, int i, int j, int c, int x, int p, const int *cand) {
    size_t k = ((size_t)i * t->w + j) * t->C + c;
    t->value[k] = (uint8_t)x;
    t->res[k] = (int16_t)(x - p);
    if (t->st->lv.vote) t->exact[k] = (uint8_t)exact_mask(cand, x);
}

/* adaptive_features.classical_outputs: LOCO-I's median predictor of the tile's values so far and a log-scale
 * index from the local activity, in place of the network's outputs (level 13) */
INLINE void classical_outputs(const PzAdTile *t, int i, int j, int c, int *mu16, int *idx) {
    const int C = t->C, w = t->w;
    const size_t here = ((size_t)i * w + j) * C + c, up = (size_t)w * C;
    int has_w = j > 0, has_n = i > 0;
    int W = has_w ? t->value[here - C] : 0, N = has_n ? t->value[here - up] : 0;
    if (!has_w) W = N;
    if (!has_n) N = W;
    int NW = has_n && has_w ? t->value[here - up - C] : N, NE = has_n && j + 1 < w ? t->value[here - up + C] : N;
    int lo = W < N ? W : N, hi = W < N ? N : W;
    int a = abs(W - NW) + abs(N - NW) + abs(N - NE);
    *mu16 = 16 * clampi(W + N - NW, lo, hi);
    *idx = a ? (16 + 6 * bitlen((uint32_t)a) < 72 ? 16 + 6 * bitlen((uint32_t)a) : 72) : 14;
}

/* one sub-pixel (adaptive._code_one): x >= 0 encodes it, x < 0 decodes it; returns it */
INLINE int code_one(PzAdTile *t, int i, int j, int c, int x, int mu16, int idx) {
    if (t->st->lv.classical) classical_outputs(t, i, j, c, &mu16, &idx);
    uint32_t slot = 0;
    if (t->st->lv.match) {
        slot = match_index(t, i, j, c);
        int e = t->st->match[slot];
        if (e && t->st->lv.match == 2) mu16 = 16 * (e - 1), idx = MATCH_CENTRE_IDX;    /* the match's value */
    }
    int hi = t->top[c];
    if (mu16 > 16 * hi) mu16 = 16 * hi;      /* the mean within the channel's range */
    int F[AD_N_FEATURES], cand[AD_CANDIDATES], p = rounded_mean(mu16);
    Stage sg;
    features(t, i, j, c, mu16, idx, F);
    F[F_VOTE] = F[F_VX] = 0;
    if (t->st->lv.vote) exact_vote(t, i, j, c, p, cand, F);
    F[F_MX] = F[F_MHIT] = 0;
    if (t->st->lv.match) match_features(t, i, j, c, p, slot, F);
    stage_init(&sg, t, F, mu16, idx);
    x = t->st->lv.bitwise ? code_bits(&sg, x, hi) : code_subpixel(&sg, p, x, hi);
    record(t, i, j, c, x, p, cand);
    if (t->st->lv.match) match_update(t, slot, i, j, c, x);
    lms_update(t->st, c, x - p);
    ols_update(t->st, c, x - p);
    return x;
}

PZ_CLONES void ad_encode(PzAdTile *t, int i, int j, int c, int x, int mu16, int idx) { code_one(t, i, j, c, x, mu16, idx); }

PZ_CLONES int ad_decode(PzAdTile *t, int i, int j, int c, int mu16, int idx) { return code_one(t, i, j, c, -1, mu16, idx); }

int64_t ad_finish_encode(PzAdTile *t) {
    for (int k = 0; k <= 4; k++) {       /* BinaryEncoder.finish: the fewest bytes that land in [x1, x2] */
        int sh = 32 - 8 * k;
        uint64_t unit = (uint64_t)1 << sh;
        uint64_t v = ((uint64_t)t->x1 + unit - 1) / unit * unit;
        if (v <= t->x2) {
            for (int b = 0; b < k; b++) put_byte(t, (uint8_t)(v >> (24 - 8 * b)));
            break;
        }
    }
    return t->failed ? -2 : t->len;
}

int ad_finish_decode(const PzAdTile *t) { return t->len <= t->pos && t->pos <= t->len + 4 ? 0 : -1; }

void ad_end(PzAdTile *t) {
    free(t->value);
    free(t->res);
    free(t->exact);
    free(t->mhit);
    if (!t->decoding) free(t->buf);
    t->value = NULL; t->res = NULL; t->exact = NULL; t->mhit = NULL; t->buf = NULL;
}

/* ---- whole tiles with known head outputs (tests, benchmarks, other models' outputs) ------------------------ */

/* Loops over a tile's sub-pixels (i, j, c) in the decoding order: wavefront t = j + slope*i, channel, row */
#define FOR_DECODING_ORDER(h, w, C, slope, i, j, c)                                                         \
    for (int t_ = 0; t_ <= (w - 1) + slope * (h - 1); t_++)                                                 \
        for (int c = 0, i_lo_ = t_ - (w - 1) <= 0 ? 0 : (t_ - (w - 1) + slope - 1) / slope,                \
                 i_hi_ = t_ / slope < h - 1 ? t_ / slope : h - 1; c < C; c++)                               \
            for (int i = i_lo_, j = t_ - slope * i; i <= i_hi_; i++, j = t_ - slope * i)

/* Encode a tile (h x w x C values) with each sub-pixel's (mu16, idx) in the decoding order (2 int64 per
 * sub-pixel) and the model's Laplace prefix sums `cdf`, coding with `st` (fresh, or carried along a chain). Writes the stream to out (room for
 * cap bytes); returns its length, -2 if memory ran out, -4 if cap is too small, -5 for slope < 2. */
int64_t pz_adaptive_encode_known(PzAdaptive *st, const int64_t *cdf, int h, int w, int C, int slope,
                                 const uint8_t *pixels, const int64_t *params, uint8_t *out, int64_t cap) {
    PzAdTile t;
    if (slope < 2) return -5;
    if (ad_begin_encode(&t, st, h, w, C, cdf) != 0) {
        ad_end(&t);
        return -2;
    }
    const int64_t *pm = params;
    FOR_DECODING_ORDER(h, w, C, slope, i, j, c) {
        ad_encode(&t, i, j, c, pixels[((size_t)i * w + j) * C + c], (int)pm[0], (int)pm[1]);
        pm += 2;
    }
    int64_t n = ad_finish_encode(&t);
    if (n >= 0 && n > cap) n = -4;
    if (n >= 0) memcpy(out, t.buf, (size_t)n);
    ad_end(&t);
    return n;
}

/* Decode a tile coded by pz_adaptive_encode_known with the same head outputs and state: pixels to out
 * (h x w x C). Returns 0, -1 if the stream is not used exactly to its end (corrupt), -2, -5 as above. */
int pz_adaptive_decode_known(PzAdaptive *st, const int64_t *cdf, int h, int w, int C, int slope,
                             const uint8_t *data, int64_t n, const int64_t *params, uint8_t *out) {
    PzAdTile t;
    if (slope < 2) return -5;
    if (ad_begin_decode(&t, st, h, w, C, cdf, data, n) != 0) {
        ad_end(&t);
        return -2;
    }
    const int64_t *pm = params;
    FOR_DECODING_ORDER(h, w, C, slope, i, j, c) {
        out[((size_t)i * w + j) * C + c] = (uint8_t)ad_decode(&t, i, j, c, (int)pm[0], (int)pm[1]);
        pm += 2;
    }
    int status = ad_finish_decode(&t);
    ad_end(&t);
    return status;
}
