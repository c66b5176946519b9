/* The adaptive entropy stage (issue 20): bitwise context mixing driven by the network's per-sub-pixel
 * prediction. pixzip/entropy/adaptive.py is its specification (binarisation, features, contexts, counters,
 * mixers, APM, coder: read it first); this is the same integers in C, and tests/test_adaptive.py checks
 * that both write the same bytes. docs/ADAPTIVE.md has the design and the measurements. */
#ifndef PZ_ADAPTIVE_H
#define PZ_ADAPTIVE_H

#include <stdint.h>

enum { AD_MAX_CONTEXTS = 40, AD_MAX_MIXERS = 4, AD_MAX_APMS = 4, AD_N_FEATURES = 59, AD_LMS_INPUTS = 12, AD_CANDIDATES = 8,
       AD_OLS_INPUTS = 28 };

/* One effort level: adaptive.py's Level, packed by pixzip/native.py (the Python table is the only one). */
typedef struct {
    int32_t n_contexts;
    int32_t ctx_len[AD_MAX_CONTEXTS];          /* features hashed by each context: 1..4 */
    int32_t ctx_feature[AD_MAX_CONTEXTS][4];
    int32_t n_mixers, mixer_feature[AD_MAX_MIXERS], mixer_size[AD_MAX_MIXERS];
    int32_t n_apms, apm_feature[AD_MAX_APMS], apm_size[AD_MAX_APMS];
    int32_t max_table_bits, counter_limit, mixer_rate, final_rate, mixer_init, net_init, apm_rate;
    int32_t lms;                 /* the residual predictor's step 2^-lms; 0: none (adaptive.Level.lms) */
    int32_t vote;                /* the exact-predictor vote's threshold; 0: none (adaptive.Level.vote) */
    int32_t ols;                 /* 1: the least-squares predictor (adaptive.Level.ols) */
    int32_t shifted;             /* 1: the network's table at the predictor's mean, a mixer input (adaptive.Level.shifted) */
    int32_t classical;           /* 1: the network's outputs replaced by a median predictor's (adaptive.Level.classical) */
    int32_t template_bits;       /* 1: F_T1..F_T3 on the templates of two-valued planes (adaptive.Level.template) */
    int32_t match;               /* 1: the match model, F_MX and F_MHIT (adaptive.Level.match); 2: and its value, where
                                  * it has one, is the binarisation's centre (adaptive.Level.match_centre) */
    int32_t bitwise;             /* 1: x's own bits are the decisions (adaptive.Level.bitwise, adaptive._code_bits) */
    const int32_t *prior;        /* the learned state a fresh one starts from (adaptive.Level.prior), or NULL */
    int64_t prior_len;           /* its length: pz_adaptive_learned's count for the level */
} PzLevel;

/* Everything the stage learns (adaptive.py's State): it codes one tile, or a chain of tiles in turn. */
typedef struct PzAdaptive PzAdaptive;

/* A tile being coded: its values and residuals so far, and the binary coder. */
typedef struct {
    PzAdaptive *st;
    int h, w, C;
    const int64_t *cdf;          /* the model's Laplace rows' prefix sums (engine._laplace_prefix) */
    uint8_t *value;
    int16_t *res;
    uint8_t *exact;              /* per sub-pixel: which candidate predictors were exact (levels with a vote; else NULL) */
    uint8_t *mhit;               /* per sub-pixel: the match's prediction 0 none, 1 right, 2 wrong (levels with match) */
    uint32_t x1, x2, x;          /* the coder's interval, and (decoding) the stream's window */
    uint8_t *buf;                /* encoding: the bytes written (grown as needed); decoding: the stream */
    int64_t len, cap, pos;
    int decoding;
    int top[4];                  /* per channel, the largest value it can take: 255, or a levels plane's last rank */
    int failed;                  /* encoding: memory ran out */
} PzAdTile;

/* sizeof(PzLevel): backends/native.py packs the same layout and refuses the stage of a library built from other
 * sources (a stale build after the structure grew would read its fields at the wrong places). */
int32_t pz_level_size(void);
PzAdaptive *pz_adaptive_new(const PzLevel *lv, int64_t n_subpixels);
void pz_adaptive_free(PzAdaptive *st);
int64_t pz_adaptive_memory(const PzAdaptive *st);
/* Whether the stage reads the network's head outputs: not at a classical level (13), whose own predictor takes
 * their place; the tile walks then skip the network (the same bytes, without its cost). */
int ad_reads_network(const PzAdaptive *st);
/* The learned small state (mixer weights, final weights, APM tables) as int32s, adaptive.State.learned's
 * order, into buf; returns the count (buf NULL: the count only). Priors are made from it. */
int64_t pz_adaptive_learned(const PzAdaptive *st, int32_t *buf);

/* Tile coding, one sub-pixel at a time in the decoding order (the tile walks in tiles.c call these). */
int ad_begin_encode(PzAdTile *t, PzAdaptive *st, int h, int w, int C, const int64_t *cdf);
int ad_begin_decode(PzAdTile *t, PzAdaptive *st, int h, int w, int C, const int64_t *cdf, const uint8_t *data,
                    int64_t n);
void ad_encode(PzAdTile *t, int i, int j, int c, int x, int mu16, int idx);
int ad_decode(PzAdTile *t, int i, int j, int c, int mu16, int idx);
int64_t ad_finish_encode(PzAdTile *t);     /* the flush; the stream's length (bytes in t->buf), -2 on no memory */
int ad_finish_decode(const PzAdTile *t);   /* 0 if the stream was used exactly to its end, else -1 */
void ad_end(PzAdTile *t);

#endif
