/* The adaptive stage's tile coder (issue 20): the network's outputs (csrc/network.h) driving the stage
 * (csrc/adaptive.c) over a tile, in the decoding order, in one thread or several. pz_encode_tile_adaptive:
 * the members' dense passes, then each state's stream; pz_decode_tile_adaptive: the wavefront walk, its rows
 * split between threads. Loaded with ctypes beside tiles.c (pixzip/backends/native.py); tests/test_native.py
 * and tests/test_adaptive.py check the bytes against the Python reference (pixzip/entropy/adaptive.py). */
#include "common.h"
#include "network.h"
#include "adaptive.h"
#include <pthread.h>
#include <sched.h>

/* The rounded mean of `nm` members' head outputs (non-negative: mu16, log-scale index): what the adaptive
 * stage takes from an ensemble (adaptive.ensemble_outputs). */
INLINE int64_t members_mean(int64_t sum, int nm) { return (sum + nm / 2) / nm; }

/* A levels plane coded in value space (entropy stage 4; entropy/value_map.py, ValueMap.packed): the network
 * reads the values, the stage codes their ranks. Per channel: the network's mu16 -> the stage's (rank space),
 * the log-scale steps to take from its index there, and rank -> value (-1: a rank the channel does not use). */
enum { VMAP_MU = 0, VMAP_SHIFT = 4096, VMAP_VALUE = 8192, VMAP_CHANNEL = 8448 };

/* each channel's last rank (its count of values - 1): the stage's range */
INLINE void value_map_tops(const int32_t *vmap, int C, PzAdTile *ad) {
    for (int g = 0; g < C && g < 4; g++) {
        int n = 0;
        while (n < 256 && vmap[(size_t)g * VMAP_CHANNEL + VMAP_VALUE + n] >= 0) n++;
        ad->top[g] = n > 0 ? n - 1 : 0;
    }
}

INLINE void value_map_outputs(const int32_t *vm, int *mu16, int *idx) {
    int m = *mu16 < 0 ? 0 : *mu16 > 4095 ? 4095 : *mu16, shift = vm[VMAP_SHIFT + m];
    *mu16 = vm[VMAP_MU + m];
    *idx = *idx > shift ? *idx - shift : 0;
}

/* ---- the adaptive stage's walk, in one thread or several -------------------------------------------------
 *
 * Within a wavefront every pixel's head outputs are independent (each reads earlier wavefronts and its own
 * earlier channels), but the stage is one sequence: (wavefront, channel, row), as the encoder coded it. So
 * the walk splits each wavefront's rows into `parts` runs, one a thread, and each (wavefront, channel) into
 * sections: every part computes its rows' network outputs, then codes them through the stage when the part
 * before it has coded its own (a counter of sections done, in the decoding order). One part's network runs
 * while another's stage does: on two threads an ensemble's tile decodes about 1.8 times as fast. Which thread
 * computes what changes no integer (the network's arithmetic is per pixel, the stage sees the same sequence),
 * so the bytes are the same for any thread count: tests/test_native.py decodes with several and compares. */
enum { MAX_PARTS = 16 };

typedef struct {
    const PzModel *const *ms;
    int nm, h, w, parts, vnni, network;
    Tile *tl;
    PzAdTile *ad;
    const int32_t *vmap;
    int go;                      /* 1: the parts start; -1: a thread could not be made, the helpers leave */
    int64_t done;                /* sections coded through the stage: ((t * C) + g) * parts + part, in order */
    int failed;                  /* a part's memory ran out, or a rank with no value was decoded: -2 / -1 */
} Walk;

/* Wait until `done` reaches `section` (spinning briefly, then yielding the core: a part may wait longer than a
 * stage section where the machine is busy). Acquire: the other parts' pixels and buffers are then visible. */
static void wait_section(Walk *wk, int64_t section) {
    for (int spins = 0; __atomic_load_n(&wk->done, __ATOMIC_ACQUIRE) < section; spins++) {
        if (spins < 2000) {
#ifdef PZ_X86
            _mm_pause();
#endif
        } else {
            sched_yield();
        }
    }
}

/* Rows [from, to) of wavefront t: each member's head outputs of channel g, to mu / ix ([member][row]). */
INLINE void network_rows(Walk *wk, int t, int g, int from, int to, int vnni, uint8_t *scratch, int64_t *mu,
                         int64_t *ix) {
    int s = wk->ms[0]->slope, h = wk->h;
    for (int i0 = from; i0 < to; i0 += BATCH) {                  /* BATCH rows' head outputs at once */
        int P = to - i0 < BATCH ? to - i0 : BATCH;
        int64_t mu16[BATCH], idx[BATCH];
        for (int k = 0; k < wk->nm; k++) {
            if (wk->network) head_params(wk->ms[k], &wk->tl[k], i0, t - s * i0, P, g, vnni, scratch, mu16, idx);
            else for (int p = 0; p < P; p++) mu16[p] = idx[p] = 0;    /* (unread: a classical level) */
            for (int p = 0; p < P; p++) {
                mu[k * (size_t)h + i0 + p] = mu16[p];
                ix[k * (size_t)h + i0 + p] = idx[p];
            }
        }
    }
}

/* Part `part` of the walk: its rows of every wavefront, their network outputs, then their stage section.
 * A pixel's network reads rows at or above its own (causal taps), of earlier wavefronts: the part's rows
 * that the part (or one before it) owned in the previous wavefront need no wait; a row that another part
 * owned there waits for that wavefront's end. */
INLINE void walk_part(Walk *wk, int part, int vnni) {
    const PzModel *m = wk->ms[0];
    int C = m->channels, s = m->slope, h = wk->h, w = wk->w, nm = wk->nm, failed = 0, owned = 0;
    int64_t *mu = malloc(sizeof(int64_t) * 2 * nm * (size_t)h);   /* then ix: each [member][row] */
    int64_t *ix = mu ? mu + nm * (size_t)h : NULL;
    uint8_t *scratch = malloc(BATCH * 4 * (size_t)MAX_K);       /* gathered taps (layers of cin % 4 != 0) */
    if (!mu || !scratch) failed = -2;                            /* (the part still passes its sections on) */
    for (int t = 0; t <= (w - 1) + s * (h - 1); t++) {          /* wavefronts t = j + s*i */
        int i_lo = first_row(t, w, s), i_hi = last_row(t, h, s);
        int rows = i_hi - i_lo + 1, a = i_lo + rows * part / wk->parts, b = i_lo + rows * (part + 1) / wk->parts;
        int free_to = owned < a ? a : (owned > b ? b : owned);  /* rows [a, free_to): all above them were ours */
        for (int g = 0; g < C; g++) {                            /* then channel, then row */
            if (!failed && g == 0 && free_to < b) {
                network_rows(wk, t, g, a, free_to, vnni, scratch, mu, ix);
                wait_section(wk, (int64_t)t * C * wk->parts);    /* the previous wavefront, every part of it */
                network_rows(wk, t, g, free_to, b, vnni, scratch, mu, ix);
            } else if (!failed) {
                network_rows(wk, t, g, a, b, vnni, scratch, mu, ix);
            }
            int64_t section = ((int64_t)t * C + g) * wk->parts + part;
            wait_section(wk, section);
            for (int i = a; i < b && !failed; i++) {             /* the stage, in the decoding order */
                int j = t - s * i, value;
                int64_t mu_sum = 0, idx_sum = 0;                 /* adaptive.ensemble_outputs */
                for (int k = 0; k < nm; k++) { mu_sum += mu[k * (size_t)h + i]; idx_sum += ix[k * (size_t)h + i]; }
                int mean = (int)members_mean(mu_sum, nm), index = (int)members_mean(idx_sum, nm);
                if (!wk->vmap) {
                    value = ad_decode(wk->ad, i, j, g, mean, index);
                } else {            /* the stage decodes a rank; the network reads its value */
                    const int32_t *vm = wk->vmap + (size_t)g * VMAP_CHANNEL;
                    value_map_outputs(vm, &mean, &index);
                    value = vm[VMAP_VALUE + ad_decode(wk->ad, i, j, g, mean, index)];
                    if (value < 0) { failed = -1; value = 0; }   /* (the range forbids it: a guard) */
                }
                for (int k = 0; k < nm; k++)
                    wk->tl[k].img[((size_t)(i + wk->ms[k]->pad) * wk->tl[k].Wp + j + wk->ms[k]->pad) * C + g] =
                        (uint8_t)value;
            }
            if (failed && !wk->failed) wk->failed = failed;      /* (written in this part's turn: ordered) */
            __atomic_store_n(&wk->done, section + 1, __ATOMIC_RELEASE);
        }
        owned = b;
    }
    free(mu);
    free(scratch);
}

static void walk_part_plain(Walk *wk, int part) { walk_part(wk, part, 0); }
#ifdef PZ_X86
VNNI_TARGET static void walk_part_vnni(Walk *wk, int part) { walk_part(wk, part, 1); }
#endif

typedef struct { Walk *wk; int part; } PartJob;

static void *run_part(void *arg) {
    PartJob *job = arg;
    int go;
    while ((go = __atomic_load_n(&job->wk->go, __ATOMIC_ACQUIRE)) == 0) sched_yield();
    if (go < 0) return NULL;
#ifdef PZ_X86
    if (job->wk->vnni) { walk_part_vnni(job->wk, job->part); return NULL; }
#endif
    walk_part_plain(job->wk, job->part);
    return NULL;
}

/* Decode an adaptive tile in `threads` threads (this one and threads - 1 more; fewer where the system
 * gives fewer: the same bytes), the pixels (with `vmap`: the ranks) to `out`. 0, -1 corrupt, -2 no memory. */
static int walk_adaptive(const PzModel *const *ms, int nm, int h, int w, uint8_t *out, PzAdTile *ad,
                         const int32_t *vmap, int threads, int vnni) {
    Tile tl[MAX_MEMBERS];
    int status = 0, C = ms[0]->channels;
    for (int k = 0; k < nm; k++) tl[k] = (Tile){0};
    for (int k = 0; k < nm && status == 0; k++) status = tile_alloc(ms[k], &tl[k], h, w);
    if (status == 0) {
        int parts = threads < 1 ? 1 : (threads > MAX_PARTS ? MAX_PARTS : threads);
        if (parts > h) parts = h;                                /* (a wavefront has at most h rows) */
        Walk wk = {ms, nm, h, w, parts, vnni, ad_reads_network(ad->st), tl, ad, vmap, 0, 0, 0};
        pthread_t helper[MAX_PARTS];
        PartJob jobs[MAX_PARTS];
        int started = 1;
        for (; started < parts; started++) {
            jobs[started] = (PartJob){&wk, started};
            if (pthread_create(&helper[started], NULL, run_part, &jobs[started]) != 0) break;
        }
        if (started < parts) {       /* the system refused a thread: the started ones leave, this one decodes alone */
            __atomic_store_n(&wk.go, -1, __ATOMIC_RELEASE);
            for (int k = 1; k < started; k++) pthread_join(helper[k], NULL);
            wk.parts = parts = 1;
        }
        __atomic_store_n(&wk.go, 1, __ATOMIC_RELEASE);
        jobs[0] = (PartJob){&wk, 0};
        run_part(&jobs[0]);
        for (int k = 1; k < parts; k++) pthread_join(helper[k], NULL);
        status = wk.failed ? wk.failed : ad_finish_decode(ad);
    }
    if (status == 0) {
        if (vmap) memcpy(out, ad->value, (size_t)h * w * C);    /* value space: the ranks, as the stage decoded them */
        else copy_pixels(ms[0], &tl[0], h, w, out);
    }
    for (int k = 0; k < nm; k++) tile_free(&tl[k], ms[k]->blocks);
    return status;
}

/* Jobs 0..n-1, each run once, in up to `threads` threads (this one and more; fewer where the system gives
 * fewer): for work whose results do not depend on which thread runs it. */
typedef struct {
    void (*fn)(void *, int);
    void *arg;
    int n, next;
} Jobs;

static void *jobs_worker(void *p) {
    Jobs *jobs = p;
    for (int k; (k = __atomic_fetch_add(&jobs->next, 1, __ATOMIC_RELAXED)) < jobs->n;) jobs->fn(jobs->arg, k);
    return NULL;
}

static void run_jobs(void (*fn)(void *, int), void *arg, int n, int threads) {
    Jobs jobs = {fn, arg, n, 0};
    pthread_t helper[MAX_PARTS];
    int started = 0;
    while (started + 1 < threads && started + 1 < n && started < MAX_PARTS &&
           pthread_create(&helper[started], NULL, jobs_worker, &jobs) == 0)
        started++;
    jobs_worker(&jobs);
    for (int k = 0; k < started; k++) pthread_join(helper[k], NULL);
}

/* An adaptive tile's encoding: each member's dense pass (a job each), then each state's stream (a job each). */
typedef struct {
    const PzModel *const *ms;
    PzAdaptive *const *sts;
    int nm, h, w, vnni;
    const uint8_t *pixels, *seen;               /* the stage codes `pixels`; the network reads `seen` */
    const int32_t *vmap;
    int64_t *first_of, *own;                    /* own: each member's head outputs, 2 per sub-pixel */
    int failed;                                 /* a dense pass ran out of memory */
    PzAdTile *ads;
    int64_t *lens;
} Encoding;

INLINE void dense_member(Encoding *e, int k, int vnni) {
    size_t n = (size_t)e->h * e->w * e->ms[0]->channels;
    if (dense_tile(e->ms[k], e->h, e->w, e->seen, e->first_of, e->own + 2 * n * k, vnni) != 0)
        __atomic_store_n(&e->failed, 1, __ATOMIC_RELAXED);
}

static void dense_member_plain(Encoding *e, int k) { dense_member(e, k, 0); }
#ifdef PZ_X86
VNNI_TARGET static void dense_member_vnni(Encoding *e, int k) { dense_member(e, k, 1); }
#endif

static void dense_job(void *arg, int k) {
    Encoding *e = arg;
#ifdef PZ_X86
    if (e->vnni) { dense_member_vnni(e, k); return; }
#endif
    dense_member_plain(e, k);
}

/* State k codes the tile over the members' averaged outputs (own's first member's rows) */
static void stage_job(void *arg, int k) {
    Encoding *e = arg;
    const PzModel *m = e->ms[0];
    int C = m->channels, s = m->slope, h = e->h, w = e->w, T = (w - 1) + s * (h - 1) + 1;
    PzAdTile *ad = &e->ads[k];
    int64_t len = ad_begin_encode(ad, e->sts[k], h, w, C, m->prefix);
    if (e->vmap) value_map_tops(e->vmap, C, ad);
    const int64_t *pm = e->own;
    for (int t = 0; t < T && len == 0; t++) {
        int i_lo = first_row(t, w, s), i_hi = last_row(t, h, s);
        for (int g = 0; g < C; g++)
            for (int i = i_lo; i <= i_hi; i++, pm += 2) {
                int mu = (int)pm[0], ix = (int)pm[1];
                if (e->vmap) value_map_outputs(e->vmap + (size_t)g * VMAP_CHANNEL, &mu, &ix);
                ad_encode(ad, i, t - s * i, g, e->pixels[((size_t)i * w + (t - s * i)) * C + g], mu, ix);
            }
    }
    e->lens[k] = len == 0 ? ad_finish_encode(ad) : len;
}

/* Encode a tile of known pixels with the adaptive stage and `nm` models (one, or an ensemble's members,
 * whose head outputs are averaged: adaptive.ensemble_outputs): the dense pass gives every sub-pixel's
 * head outputs in the decoding order, then the stage codes the sub-pixels in that order with each of the
 * `nst` states `sts` (fresh, or carried along a chain of tiles; several: the encoder's trial of levels, one
 * network pass for all). The members' passes, then the states' streams, run in up to `threads` threads.
 * The streams go to `out` one after another (room for cap bytes in all), their lengths to `lens`. Returns
 * their total length, -2 if memory ran out, -3 for a rank `vmap` has no value for, -4 if cap is too small. */
static int64_t encode_adaptive(const PzModel *const *ms, int nm, PzAdaptive *const *sts, int nst, int h, int w,
                               const uint8_t *pixels, uint8_t *out, int64_t cap, int64_t *lens, const int32_t *vmap,
                               int threads, int vnni) {
    int C = ms[0]->channels, T = (w - 1) + ms[0]->slope * (h - 1) + 1;
    size_t n = (size_t)h * w * C;
    Encoding e = {ms, sts, nm, h, w, vnni, pixels, pixels, vmap, NULL, NULL, 0, NULL, lens};
    int64_t status = -2;
    uint8_t *values = vmap ? malloc(n) : NULL;          /* value space: what the network reads */
    e.first_of = malloc(sizeof(int64_t) * (T + 1));
    e.own = malloc(sizeof(int64_t) * 2 * n * nm);
    e.ads = calloc(nst, sizeof(PzAdTile));
    if (!e.first_of || !e.own || !e.ads || (vmap && !values)) goto done;
    for (size_t q = 0; vmap && q < n; q++) {
        int32_t v = vmap[(q % C) * VMAP_CHANNEL + VMAP_VALUE + pixels[q]];
        if (v < 0) { status = -3; goto done; }          /* a rank the channel does not use */
        values[q] = (uint8_t)v;
    }
    if (vmap) e.seen = values;
    wavefront_starts(h, w, ms[0]->slope, e.first_of);
    int network = 0;                          /* a classical level's states read no network: skip its passes */
    for (int k = 0; k < nst; k++) network |= ad_reads_network(sts[k]);
    if (!network) {
        memset(e.own, 0, sizeof(int64_t) * 2 * n);
    } else {
        run_jobs(dense_job, &e, nm, threads);
        if (e.failed) goto done;
        for (size_t q = 0; nm > 1 && q < 2 * n; q++) {  /* the members' sums, then their rounded means */
            int64_t sum = 0;
            for (int k = 0; k < nm; k++) sum += e.own[2 * n * k + q];
            e.own[q] = members_mean(sum, nm);
        }
    }
    run_jobs(stage_job, &e, nst, threads);
    int64_t used = 0;
    status = 0;
    for (int k = 0; k < nst; k++) {
        int64_t len = lens[k];
        if (status == 0 && len >= 0 && len > cap - used) len = -4;
        if (status == 0 && len < 0) status = len;
        if (status == 0) memcpy(out + used, e.ads[k].buf, (size_t)len);
        used += len > 0 ? len : 0;
        ad_end(&e.ads[k]);
    }
    if (status == 0) status = used;
done:
    free(e.first_of); free(e.own); free(e.ads); free(values);
    return status;
}

/* The members of an adaptive tile's ensemble (or its one model) fit together: 1..MAX_MEMBERS of them with
 * the same channels, slope (>= 2) and Laplace rows (the stage reads the first member's). 0, -3, or -5. */
static int adaptive_members_ok(const PzModel *const *ms, int nm) {
    if (nm < 1 || nm > MAX_MEMBERS) return -3;
    for (int k = 0; k < nm; k++) {
        if (ms[k]->slope < 2) return -5;
        if (ms[k]->slope != ms[0]->slope || ms[k]->channels != ms[0]->channels) return -3;
    }
    return 0;
}

/* Encode one tile of h x w known pixels with `nm` models (one, or an ensemble's members: their head
 * outputs averaged) and the adaptive stage, once per state of `sts` (each fresh for this tile, or carried
 * from the previous tile of a chain: the format decides, never the thread count; several: the encoder
 * trying levels on one network pass). The streams go to `out` one after another (room for `cap` bytes;
 * 24 per sub-pixel + 16 a stream always suffice), their lengths to `lens`. `vmap` (or NULL): the pixels are a
 * levels plane's ranks, the network reads their values (VMAP_*). The members' passes and the states' streams
 * run in up to `threads` threads (the same bytes for any count). Returns their total length, -2 if memory ran
 * out, -4 if cap is too small, -3 or -5 for members that do not fit (adaptive_members_ok), -3 for no state or
 * a rank `vmap` has no value for. */
int64_t pz_encode_tile_adaptive(const PzModel *const *ms, int nm, PzAdaptive *const *sts, int nst, int h, int w,
                                const uint8_t *pixels, uint8_t *out, int64_t cap, int64_t *lens, const int32_t *vmap,
                                int threads) {
    int bad = adaptive_members_ok(ms, nm);
    if (bad) return bad;
    if (nst < 1) return -3;
    return encode_adaptive(ms, nm, sts, nst, h, w, pixels, out, cap, lens, vmap, threads, pz_vnni);
}

/* Decode one tile coded by pz_encode_tile_adaptive from its `n`-byte stream, with the same models and a
 * state in the same condition: the wavefront walk gives the stage each sub-pixel's head outputs in turn, in
 * `threads` threads (walk_adaptive: the same pixels for any count). Writes h x w x channels pixel values to
 * `out` (with `vmap`: the ranks the stage decoded). Returns 0, -1 if the stream is not used exactly to its
 * end or decodes a rank `vmap` has no value for (corrupt), -2 if memory ran out, -3 or -5 as above. */
int pz_decode_tile_adaptive(const PzModel *const *ms, int nm, PzAdaptive *st, int h, int w, const uint8_t *data,
                            int64_t n, uint8_t *out, const int32_t *vmap, int threads) {
    int status = adaptive_members_ok(ms, nm);
    if (status) return status;
    PzAdTile ad;
    status = ad_begin_decode(&ad, st, h, w, ms[0]->channels, ms[0]->prefix, data, n);
    if (vmap) value_map_tops(vmap, ms[0]->channels, &ad);
    if (status == 0) status = walk_adaptive(ms, nm, h, w, out, &ad, vmap, threads, pz_vnni);
    ad_end(&ad);
    return status;
}

