/* Native alpha compositing of the CPU rasterizer (float32, any number of channels D): the same algorithm and rules as
 * the numba kernels ``composite_fwd`` / ``_composite_bwd`` of pcf_gs/render/cpu_composite.py (read that module's
 * docstring for the per-pixel rules and the backward's formulas), hand-vectorised: one 16-pixel tile row is one
 * AVX-512 register (or two AVX2 registers). As in numba, D <= 4 channels are summed densely over the row, channel
 * by channel; more channels only at the pixels that composite, D wide.
 *
 * Why by hand: numba (LLVM) compiles the same loops to half-width registers, spills the exp constants to the stack
 * and re-checks aliasing on every row; gcc's auto-vectoriser does no better. Intrinsics are ~3x faster (AVX-512) or
 * ~2.3x (AVX2) per kernel on one core (docs/benchmarks.md).
 *
 * Results equal numba's up to float32 rounding: sigma is evaluated as fma(b dx, dy, 0.5 (a dx^2 + c dy^2)), and the
 * backward's per-entry sums are kept per lane and added once per entry. The exp is the same polynomial; 2^-n is
 * applied exactly (vscalefps, or exponent bits).
 *
 * Threading: every kernel takes a shared job counter and loops "take the next (image, tile) job" until none is
 * left; the caller runs it on several threads (ctypes releases the GIL) for dynamic load balancing without OpenMP
 * (whose runtime would compete with numba's and torch's).
 *
 * Built on first use by pcf_gs/render/cpu_native.py with the machine's C compiler (-O3 -march=native); without
 * AVX2+FMA, or without a compiler, the numba kernels are used. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TILE 16
#define TP (TILE * TILE)
#define ATHR ((float)(1.0 / 255.0)) /* ALPHA_THRESHOLD */
#define AMAX 0.999f                 /* ALPHA_MAX */
#define TSTOP 1e-4f                 /* T_STOP */
#define LOG2E 1.4426950408889634f
#define LN2HI 0.693145751953125f
#define LN2LO 1.4286068203094173e-06f
#define P7 (float)(-1.0 / 5040.0)
#define P6 (float)(1.0 / 720.0)
#define P5 (float)(-1.0 / 120.0)
#define P4 (float)(1.0 / 24.0)
#define P3 (float)(-1.0 / 6.0)
#define P2 0.5f
#define P1 -1.0f
#define P0 1.0f

/* Tile rows [r0, r1) a Gaussian can reach with alpha >= 1/255 (+1 px), in float64 as numba's _row_range. */
static inline void row_range(float my, float a, float b, float c, float o, int y0, int ph, int *r0, int *r1) {
    double af = a, bf = b, cf = c;
    double det = af * cf - bf * bf;
    double v = (double)o * 255.0;
    double lvl = log(v > 1.0 ? v : 1.0);
    double hy = sqrt(2.0 * lvl * af / det) + 1.0;
    double ly = (double)my - 0.5 - y0;
    double lo = ceil(ly - hy), hi = floor(ly + hy) + 1.0;
    *r0 = lo > 0.0 ? (int)lo : 0;
    *r1 = hi < (double)ph ? (int)hi : ph;
}

/* D > 4 forward: acc[(p0 + cc) D + d] += w[cc] col[d] for the lanes cc set in mask (the pixels that composite). */
static inline void add_weighted(float *restrict acc, int p0, unsigned mask, const float *restrict w,
                                const float *restrict col, int D) {
    for (; mask; mask &= mask - 1) {
        int cc = __builtin_ctz(mask);
        float ws = w[cc];
        float *restrict ap = acc + (size_t)(p0 + cc) * D;
        for (int d = 0; d < D; d++) ap[d] += ws * col[d];
    }
}

/* D > 4 backward, for the lanes cc set in mask (v_p = vop[(p0 + cc) D ...], the pixel's output gradient):
 * cv[cc] = col . v_p and gcol += fac[cc] v_p; the other lanes of cv [lanes] are 0. */
static inline void dot_and_grad(const float *restrict vop, int p0, unsigned mask, const float *restrict fac,
                                const float *restrict col, int D, float *restrict gcol, float *restrict cv, int lanes) {
    for (int k = 0; k < lanes; k++) cv[k] = 0.0f;
    for (; mask; mask &= mask - 1) {
        int cc = __builtin_ctz(mask);
        const float *restrict vp = vop + (size_t)(p0 + cc) * D;
        float f = fac[cc], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int d = 0; d < D; d++) {
            dot += col[d] * vp[d];
            gcol[d] += f * vp[d];
        }
        cv[cc] = dot;
    }
}

#define SETUP                                                           \
    int T = tiles_x * tiles_y;                                          \
    int i = job / T, t = job - i * T, tyi = t / tiles_x, txi = t - tyi * tiles_x; \
    int x0 = txi * TILE, y0 = tyi * TILE;                               \
    int pw = width - x0 < TILE ? width - x0 : TILE;                     \
    int ph = height - y0 < TILE ? height - y0 : TILE;                   \
    int64_t start = tile_offsets[job], end = tile_offsets[job + 1];     \
    float pxs[TILE], pys[TILE];                                         \
    for (int k = 0; k < TILE; k++) { pxs[k] = (float)(x0 + k) + 0.5f; pys[k] = (float)(y0 + k) + 0.5f; }

#define WRITE_OUT(ACC_AT)                                                        \
    for (int r = 0; r < ph; r++)                                                 \
        for (int cc = 0; cc < pw; cc++) {                                        \
            int p = r * TILE + cc;                                               \
            size_t pix = ((size_t)i * height + y0 + r) * width + x0 + cc;        \
            float tp = trans[p];                                                 \
            t_final[pix] = tp;                                                   \
            last[pix] = lastk[p];                                                \
            for (int d = 0; d < D; d++)                                          \
                out[pix * D + d] = ACC_AT + (has_bg ? tp * backgrounds[i * D + d] : 0.0f); \
        }

/* The backward's state of one tile (origin x0, y0, size pw x ph, image i) from the forward's outputs: transmittance
 * trans and tfin = T_final, the last composited entry lastk (-1 outside the image), the output gradients
 * (channel-major vot [D][TP] for D <= 4, else pixel-major vop [TP][D]), va = v_alpha - bg . v and sbuf = 0.
 * Returns the tile's largest last entry (the backward walks from there to the front). */
static inline int bwd_tile_load(int i, int x0, int y0, int pw, int ph, int width, int height, int D, int has_bg,
                                const float *restrict backgrounds, const float *restrict t_final,
                                const int32_t *restrict last, const float *restrict v_out,
                                const float *restrict v_alpha_out, float *restrict trans, float *restrict tfin,
                                int32_t *restrict lastk, float *restrict vot, float *restrict vop, float *restrict va,
                                float *restrict sbuf) {
    for (int p = 0; p < TP; p++) { trans[p] = 1.0f; tfin[p] = 1.0f; lastk[p] = -1; va[p] = 0.0f; sbuf[p] = 0.0f; }
    if (D <= 4) memset(vot, 0, sizeof(float) * D * TP); else memset(vop, 0, sizeof(float) * TP * D);
    int kmax = -1;
    for (int r = 0; r < ph; r++)
        for (int cc = 0; cc < pw; cc++) {
            int p = r * TILE + cc;
            size_t pix = ((size_t)i * height + y0 + r) * width + x0 + cc;
            trans[p] = tfin[p] = t_final[pix];
            int lk = last[pix];
            lastk[p] = lk;
            kmax = lk > kmax ? lk : kmax;
            float bgv = 0.0f;
            for (int d = 0; d < D; d++) {
                if (D <= 4) vot[d * TP + p] = v_out[pix * D + d]; else vop[(size_t)p * D + d] = v_out[pix * D + d];
                if (has_bg) bgv += backgrounds[i * D + d] * v_out[pix * D + d];
            }
            va[p] = v_alpha_out[pix] - bgv;
        }
    return kmax;
}

#if defined(__AVX512F__)
/* ------------------------------------------------------------------ AVX-512 intrinsics, one register per row */
static inline __m512 exp_neg_poly16(__m512 s) {
    __m512 ss = _mm512_max_ps(_mm512_min_ps(s, _mm512_set1_ps(11.0f)), _mm512_setzero_ps());
    __m512 nf = _mm512_roundscale_ps(_mm512_fmadd_ps(ss, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5f)),
                                     _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(LN2HI), ss);
    r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(LN2LO), r);
    __m512 p = _mm512_set1_ps(P7);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P0));
    return _mm512_scalef_ps(p, _mm512_sub_ps(_mm512_setzero_ps(), nf));  /* p * 2^-n, exact */
}


/* add_weighted / dot_and_grad with 16-channel chunks (masked at the tail), for D > 4 on AVX-512. */
static inline __mmask16 chunk_mask(int left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u); }

static inline void add_weighted16(float *restrict acc, int p0, unsigned mask, const float *restrict w,
                                  const float *restrict col, int D) {
    for (; mask; mask &= mask - 1) {
        int cc = __builtin_ctz(mask);
        __m512 ws = _mm512_set1_ps(w[cc]);
        float *restrict ap = acc + (size_t)(p0 + cc) * D;
        for (int d = 0; d < D; d += 16) {
            __mmask16 mk = chunk_mask(D - d);
            __m512 a = _mm512_maskz_loadu_ps(mk, ap + d);
            _mm512_mask_storeu_ps(ap + d, mk, _mm512_fmadd_ps(ws, _mm512_maskz_loadu_ps(mk, col + d), a));
        }
    }
}

static inline void dot_and_grad16(const float *restrict vop, int p0, unsigned mask, const float *restrict fac,
                                  const float *restrict col, int D, float *restrict gcol, float *restrict cv) {
    _mm512_store_ps(cv, _mm512_setzero_ps());
    for (; mask; mask &= mask - 1) {
        int cc = __builtin_ctz(mask);
        const float *restrict vp = vop + (size_t)(p0 + cc) * D;
        __m512 f = _mm512_set1_ps(fac[cc]), dot = _mm512_setzero_ps();
        for (int d = 0; d < D; d += 16) {
            __mmask16 mk = chunk_mask(D - d);
            __m512 v = _mm512_maskz_loadu_ps(mk, vp + d);
            dot = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, col + d), v, dot);
            _mm512_mask_storeu_ps(gcol + d, mk, _mm512_fmadd_ps(f, v, _mm512_maskz_loadu_ps(mk, gcol + d)));
        }
        cv[cc] = _mm512_reduce_add_ps(dot);
    }
}

static void composite_fwd_avx512(const float *restrict means2d, const float *restrict conics, const float *restrict opac,
                          const float *restrict colors, const float *restrict backgrounds, int has_bg,
                          const int64_t *restrict tile_offsets, const int32_t *restrict flat_ids,
                          int n_images, int width, int height, int tiles_x, int tiles_y, int D,
                          float *restrict out, float *restrict t_final, int32_t *restrict last, int64_t *counter) {
    int njobs = n_images * tiles_x * tiles_y;
    float *accs = D > 4 ? (float *)malloc(sizeof(float) * TP * D) : NULL; /* D > 4: [pixel][channel] sums */
    if (D > 4 && !accs) return;
    for (;;) {
        int job = (int)__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
        if (job >= njobs) break;
        SETUP
        float trans[TP] __attribute__((aligned(64)));
        int32_t lastk[TP] __attribute__((aligned(64)));
        float acct[4 * TP] __attribute__((aligned(64)));
        __mmask16 alive[TILE];
        __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
        for (int r = 0; r < TILE; r++) {
            _mm512_store_ps(trans + r * TILE, one);
            _mm512_store_si512((__m512i *)(lastk + r * TILE), _mm512_set1_epi32(-1));
            if (D <= 4)
                for (int d = 0; d < D; d++) _mm512_store_ps(acct + d * TP + r * TILE, zero);
            alive[r] = r < ph ? (__mmask16)((1u << pw) - 1u) : 0;
        }
        if (D > 4) memset(accs, 0, sizeof(float) * TP * D);
        int n_alive = pw * ph;
        __m512 px = _mm512_loadu_ps(pxs);
        __m512 vthr = _mm512_set1_ps(ATHR), vmax = _mm512_set1_ps(AMAX), vstop = _mm512_set1_ps(TSTOP);
        for (int64_t e = start; e < end; e++) {
            if (n_alive <= 0) break;
            int gid = flat_ids[e];
            float mx = means2d[2 * gid], my = means2d[2 * gid + 1];
            float a = conics[3 * gid], b = conics[3 * gid + 1], c = conics[3 * gid + 2];
            float o = opac[gid];
            int r0, r1;
            row_range(my, a, b, c, o, y0, ph, &r0, &r1);
            __m512i ve = _mm512_set1_epi32((int32_t)e);
            __m512 dx = _mm512_sub_ps(_mm512_set1_ps(mx), px);
            __m512 adx2 = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(a), dx), dx);
            __m512 bdx = _mm512_mul_ps(_mm512_set1_ps(b), dx);
            __m512 vo = _mm512_set1_ps(o);
            __m512 cd0 = _mm512_set1_ps(colors[(size_t)gid * D]);
            __m512 cd1 = _mm512_set1_ps(D > 1 ? colors[(size_t)gid * D + 1] : 0.0f);
            __m512 cd2 = _mm512_set1_ps(D > 2 ? colors[(size_t)gid * D + 2] : 0.0f);
            __m512 cd3 = _mm512_set1_ps(D > 3 ? colors[(size_t)gid * D + 3] : 0.0f);
            for (int r = r0; r < r1; r++) {
                float dy = my - pys[r];
                __m512 vdy = _mm512_set1_ps(dy);
                /* sigma = 0.5 (a dx^2 + c dy^2) + b dx dy */
                __m512 sigma = _mm512_fmadd_ps(bdx, vdy,
                    _mm512_mul_ps(_mm512_set1_ps(0.5f), _mm512_add_ps(adx2, _mm512_set1_ps(c * dy * dy))));
                __m512 alpha = _mm512_min_ps(_mm512_mul_ps(vo, exp_neg_poly16(sigma)), vmax);
                __m512 tp = _mm512_load_ps(trans + r * TILE);
                __m512 nt = _mm512_mul_ps(tp, _mm512_sub_ps(one, alpha));
                __mmask16 ok = _mm512_cmp_ps_mask(sigma, zero, _CMP_GE_OQ)
                             & _mm512_cmp_ps_mask(alpha, vthr, _CMP_GE_OQ) & alive[r];
                __mmask16 gt = _mm512_cmp_ps_mask(nt, vstop, _CMP_GT_OQ);
                __mmask16 contrib = ok & gt;
                __mmask16 stop = ok & (__mmask16)~gt;
                alive[r] &= (__mmask16)~stop;
                n_alive -= __builtin_popcount((unsigned)stop);
                _mm512_store_ps(trans + r * TILE, _mm512_mask_mov_ps(tp, contrib, nt));
                _mm512_mask_store_epi32(lastk + r * TILE, contrib, ve);
                __m512 w = _mm512_maskz_mul_ps(contrib, alpha, tp);
                if (D <= 4) {  /* dense over the row, channel by channel */
                    float *ad = acct + r * TILE;
                    _mm512_store_ps(ad, _mm512_fmadd_ps(w, cd0, _mm512_load_ps(ad)));
                    if (D > 1) _mm512_store_ps(ad + TP, _mm512_fmadd_ps(w, cd1, _mm512_load_ps(ad + TP)));
                    if (D > 2) _mm512_store_ps(ad + 2 * TP, _mm512_fmadd_ps(w, cd2, _mm512_load_ps(ad + 2 * TP)));
                    if (D > 3) _mm512_store_ps(ad + 3 * TP, _mm512_fmadd_ps(w, cd3, _mm512_load_ps(ad + 3 * TP)));
                } else {  /* only the pixels that composite, D-wide */
                    float wr[TILE] __attribute__((aligned(64)));
                    _mm512_store_ps(wr, w);
                    add_weighted16(accs, r * TILE, (unsigned)contrib, wr, colors + (size_t)gid * D, D);
                }
            }
        }
        if (D <= 4) { WRITE_OUT(acct[d * TP + p]) } else { WRITE_OUT(accs[(size_t)p * D + d]) }
    }
    free(accs);
}

static void composite_bwd_avx512(const float *restrict means2d, const float *restrict conics, const float *restrict opac,
                          const float *restrict colors, const float *restrict backgrounds, int has_bg,
                          const int64_t *restrict tile_offsets, const int32_t *restrict flat_ids,
                          int n_images, int width, int height, int tiles_x, int tiles_y, int D,
                          const float *restrict t_final, const int32_t *restrict last,
                          const float *restrict v_out, const float *restrict v_alpha_out,
                          float *restrict s_xy, float *restrict s_conic, float *restrict s_opac, float *restrict s_col,
                        int64_t *counter) {
    int njobs = n_images * tiles_x * tiles_y;
    /* D > 4: the tile's output gradients [pixel][channel] and one entry's colour gradient [D] */
    float *vop = D > 4 ? (float *)malloc(sizeof(float) * TP * D) : NULL;
    float *gcd = D > 4 ? (float *)malloc(sizeof(float) * D) : NULL;
    if (D > 4 && (!vop || !gcd)) { free(vop); free(gcd); return; }
    for (;;) {
        int job = (int)__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
        if (job >= njobs) break;
        SETUP
        if (end == start) continue;
        float trans[TP] __attribute__((aligned(64)));
        float tfin[TP] __attribute__((aligned(64)));
        int32_t lastk[TP] __attribute__((aligned(64)));
        float vot[4 * TP] __attribute__((aligned(64)));
        float va[TP] __attribute__((aligned(64)));
        float sbuf[TP] __attribute__((aligned(64)));
        int kmax = bwd_tile_load(i, x0, y0, pw, ph, width, height, D, has_bg, backgrounds, t_final, last, v_out,
                                 v_alpha_out, trans, tfin, lastk, vot, vop, va, sbuf);
        __m512 px = _mm512_loadu_ps(pxs);
        const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps(), half = _mm512_set1_ps(0.5f);
        const __m512 vthr = _mm512_set1_ps(ATHR), vmax = _mm512_set1_ps(AMAX);
        for (int64_t e = kmax; e >= start; e--) {
            int gid = flat_ids[e];
            float mx = means2d[2 * gid], my = means2d[2 * gid + 1];
            float a = conics[3 * gid], b = conics[3 * gid + 1], c = conics[3 * gid + 2];
            float o = opac[gid];
            int r0, r1;
            row_range(my, a, b, c, o, y0, ph, &r0, &r1);
            __m512i ve = _mm512_set1_epi32((int32_t)e);
            __m512 va_ = _mm512_set1_ps(a), vb = _mm512_set1_ps(b), vc = _mm512_set1_ps(c), vo = _mm512_set1_ps(o);
            __m512 dx = _mm512_sub_ps(_mm512_set1_ps(mx), px);
            __m512 dx2h = _mm512_mul_ps(half, _mm512_mul_ps(dx, dx));
            __m512 adx2 = _mm512_mul_ps(_mm512_mul_ps(va_, dx), dx);
            __m512 bdx = _mm512_mul_ps(vb, dx);
            __m512 adx = _mm512_mul_ps(va_, dx);
            __m512 cd[4];
            for (int d = 0; d < 4; d++) cd[d] = _mm512_set1_ps(d < D ? colors[(size_t)gid * D + d] : 0.0f);
            __m512 gx = zero, gy = zero, ga = zero, gb = zero, gc = zero, go = zero;
            __m512 gcol[4] = {zero, zero, zero, zero};
            if (D > 4) memset(gcd, 0, sizeof(float) * D);
            for (int r = r0; r < r1; r++) {
                float dy = my - pys[r];
                __m512 vdy = _mm512_set1_ps(dy);
                __m512 sigma = _mm512_fmadd_ps(bdx, vdy, _mm512_mul_ps(half, _mm512_add_ps(adx2, _mm512_set1_ps(c * dy * dy))));
                __m512 vis = exp_neg_poly16(sigma);
                __m512 ov = _mm512_mul_ps(vo, vis);
                __m512 alpha = _mm512_min_ps(ov, vmax);
                __mmask16 valid = _mm512_cmp_ps_mask(sigma, zero, _CMP_GE_OQ) & _mm512_cmp_ps_mask(alpha, vthr, _CMP_GE_OQ)
                                & _mm512_cmp_epi32_mask(ve, _mm512_load_si512((const __m512i *)(lastk + r * TILE)), _MM_CMPINT_LE);
                if (!valid) continue;
                __m512 ra = _mm512_div_ps(one, _mm512_sub_ps(one, alpha));
                __m512 tr = _mm512_load_ps(trans + r * TILE);
                tr = _mm512_mask_mul_ps(tr, valid, tr, ra);
                _mm512_store_ps(trans + r * TILE, tr);
                __m512 fac = _mm512_maskz_mul_ps(valid, alpha, tr);
                __m512 cv = zero;
                if (D <= 4) {
                    for (int d = 0; d < D; d++) {
                        __m512 v = _mm512_load_ps(vot + d * TP + r * TILE);
                        cv = _mm512_fmadd_ps(cd[d], v, cv);
                        gcol[d] = _mm512_fmadd_ps(fac, v, gcol[d]);
                    }
                } else {
                    float fr[TILE] __attribute__((aligned(64))), cvr[TILE] __attribute__((aligned(64)));
                    _mm512_store_ps(fr, fac);
                    dot_and_grad16(vop, r * TILE, (unsigned)valid, fr, colors + (size_t)gid * D, D, gcd, cvr);
                    cv = _mm512_load_ps(cvr);
                }
                __m512 sb = _mm512_load_ps(sbuf + r * TILE);
                __m512 tf = _mm512_load_ps(tfin + r * TILE);
                __m512 var = _mm512_load_ps(va + r * TILE);
                /* v_alpha = cv T - S ra + tf ra va */
                __m512 v_alpha = _mm512_fmadd_ps(cv, tr, _mm512_mul_ps(ra, _mm512_fmsub_ps(tf, var, sb)));
                _mm512_store_ps(sbuf + r * TILE, _mm512_fmadd_ps(fac, cv, sb));
                __mmask16 keep = valid & _mm512_cmp_ps_mask(ov, vmax, _CMP_LE_OQ);
                __m512 vism = _mm512_maskz_mov_ps(keep, vis);
                __m512 vsig = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(zero, vo), vism), v_alpha);
                ga = _mm512_fmadd_ps(vsig, dx2h, ga);
                __m512 vsdy = _mm512_mul_ps(vsig, vdy);
                gb = _mm512_fmadd_ps(vsdy, dx, gb);
                gc = _mm512_fmadd_ps(_mm512_mul_ps(half, vsdy), vdy, gc);
                gx = _mm512_fmadd_ps(vsig, _mm512_fmadd_ps(vb, vdy, adx), gx);
                gy = _mm512_fmadd_ps(vsig, _mm512_fmadd_ps(vc, vdy, bdx), gy);
                go = _mm512_fmadd_ps(vism, v_alpha, go);
            }
            s_xy[2 * e] = _mm512_reduce_add_ps(gx);
            s_xy[2 * e + 1] = _mm512_reduce_add_ps(gy);
            s_conic[3 * e] = _mm512_reduce_add_ps(ga);
            s_conic[3 * e + 1] = _mm512_reduce_add_ps(gb);
            s_conic[3 * e + 2] = _mm512_reduce_add_ps(gc);
            s_opac[e] = _mm512_reduce_add_ps(go);
            if (D <= 4)
                for (int d = 0; d < D; d++) s_col[e * D + d] = _mm512_reduce_add_ps(gcol[d]);
            else
                memcpy(s_col + (size_t)e * D, gcd, sizeof(float) * D);
        }
    }
    free(vop);
    free(gcd);
}

#endif /* __AVX512F__ */

#if defined(__AVX2__) && defined(__FMA__)
/* ------------------------------------------------------------------ AVX2 intrinsics, two __m256 per row */
static inline __m256 exp_neg_poly8(__m256 s) {
    __m256 ss = _mm256_max_ps(_mm256_min_ps(s, _mm256_set1_ps(11.0f)), _mm256_setzero_ps());
    __m256 nf = _mm256_floor_ps(_mm256_fmadd_ps(ss, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(LN2HI), ss);
    r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(LN2LO), r);
    __m256 p = _mm256_set1_ps(P7);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P0));
    __m256i n = _mm256_cvtps_epi32(nf);
    __m256i bits = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(127), n), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

static void composite_fwd_avx2(const float *restrict means2d, const float *restrict conics, const float *restrict opac,
                        const float *restrict colors, const float *restrict backgrounds, int has_bg,
                        const int64_t *restrict tile_offsets, const int32_t *restrict flat_ids,
                        int n_images, int width, int height, int tiles_x, int tiles_y, int D,
                        float *restrict out, float *restrict t_final, int32_t *restrict last, int64_t *counter) {
    int njobs = n_images * tiles_x * tiles_y;
    float *accs = D > 4 ? (float *)malloc(sizeof(float) * TP * D) : NULL; /* D > 4: [pixel][channel] sums */
    if (D > 4 && !accs) return;
    for (;;) {
        int job = (int)__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
        if (job >= njobs) break;
        SETUP
        float trans[TP] __attribute__((aligned(64)));
        float alive[TP] __attribute__((aligned(64)));  /* all-ones bits = alive */
        int32_t lastk[TP] __attribute__((aligned(64)));
        float acct[4 * TP] __attribute__((aligned(64)));
        __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
        for (int p = 0; p < TP; p++) { trans[p] = 1.0f; lastk[p] = -1; alive[p] = 0.0f; }
        if (D <= 4) memset(acct, 0, sizeof(float) * D * TP); else memset(accs, 0, sizeof(float) * TP * D);
        for (int r = 0; r < ph; r++) for (int cc = 0; cc < pw; cc++) { union { int i; float f; } u = {-1}; alive[r * TILE + cc] = u.f; }
        int n_alive = pw * ph;
        __m256 px[2] = {_mm256_loadu_ps(pxs), _mm256_loadu_ps(pxs + 8)};
        __m256 vthr = _mm256_set1_ps(ATHR), vmax = _mm256_set1_ps(AMAX), vstop = _mm256_set1_ps(TSTOP);
        for (int64_t e = start; e < end; e++) {
            if (n_alive <= 0) break;
            int gid = flat_ids[e];
            float mx = means2d[2 * gid], my = means2d[2 * gid + 1];
            float a = conics[3 * gid], b = conics[3 * gid + 1], c = conics[3 * gid + 2];
            float o = opac[gid];
            int r0, r1;
            row_range(my, a, b, c, o, y0, ph, &r0, &r1);
            __m256 ve = _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)e));
            __m256 adx2[2], bdx[2];
            for (int h = 0; h < 2; h++) {
                __m256 dx = _mm256_sub_ps(_mm256_set1_ps(mx), px[h]);
                adx2[h] = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(a), dx), dx);
                bdx[h] = _mm256_mul_ps(_mm256_set1_ps(b), dx);
            }
            __m256 vo = _mm256_set1_ps(o);
            __m256 cdv[4];
            for (int d = 0; d < 4; d++) cdv[d] = _mm256_set1_ps(d < D ? colors[(size_t)gid * D + d] : 0.0f);
            for (int r = r0; r < r1; r++) {
                float dy = my - pys[r];
                __m256 vdy = _mm256_set1_ps(dy), hcdy2 = _mm256_set1_ps(c * dy * dy);
                int nstop = 0;
                for (int h = 0; h < 2; h++) {
                    int off = r * TILE + 8 * h;
                    __m256 sigma = _mm256_fmadd_ps(bdx[h], vdy,
                        _mm256_mul_ps(_mm256_set1_ps(0.5f), _mm256_add_ps(adx2[h], hcdy2)));
                    __m256 alpha = _mm256_min_ps(_mm256_mul_ps(vo, exp_neg_poly8(sigma)), vmax);
                    __m256 tp = _mm256_load_ps(trans + off);
                    __m256 nt = _mm256_mul_ps(tp, _mm256_sub_ps(one, alpha));
                    __m256 ok = _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps(sigma, zero, _CMP_GE_OQ),
                                                            _mm256_cmp_ps(alpha, vthr, _CMP_GE_OQ)),
                                              _mm256_load_ps(alive + off));
                    __m256 gt = _mm256_cmp_ps(nt, vstop, _CMP_GT_OQ);
                    __m256 contrib = _mm256_and_ps(ok, gt);
                    __m256 stop = _mm256_andnot_ps(gt, ok);
                    _mm256_store_ps(alive + off, _mm256_andnot_ps(stop, _mm256_load_ps(alive + off)));
                    nstop += __builtin_popcount((unsigned)_mm256_movemask_ps(stop));
                    _mm256_store_ps(trans + off, _mm256_blendv_ps(tp, nt, contrib));
                    _mm256_store_ps((float *)(lastk + off), _mm256_blendv_ps(_mm256_load_ps((float *)(lastk + off)), ve, contrib));
                    __m256 w = _mm256_and_ps(contrib, _mm256_mul_ps(alpha, tp));
                    if (D <= 4) {
                        for (int d = 0; d < D; d++) {
                            float *ad = acct + d * TP + off;
                            _mm256_store_ps(ad, _mm256_fmadd_ps(w, cdv[d], _mm256_load_ps(ad)));
                        }
                    } else {
                        float wr[8] __attribute__((aligned(32)));
                        _mm256_store_ps(wr, w);
                        add_weighted(accs, off, (unsigned)_mm256_movemask_ps(contrib), wr, colors + (size_t)gid * D, D);
                    }
                }
                n_alive -= nstop;
            }
        }
        if (D <= 4) { WRITE_OUT(acct[d * TP + p]) } else { WRITE_OUT(accs[(size_t)p * D + d]) }
    }
    free(accs);
}
/* ------------------------------------------------------------------ AVX2 variant, two __m256 per row */
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static void composite_bwd_avx2(const float *restrict means2d, const float *restrict conics, const float *restrict opac,
                        const float *restrict colors, const float *restrict backgrounds, int has_bg,
                        const int64_t *restrict tile_offsets, const int32_t *restrict flat_ids,
                        int n_images, int width, int height, int tiles_x, int tiles_y, int D,
                        const float *restrict t_final, const int32_t *restrict last,
                        const float *restrict v_out, const float *restrict v_alpha_out,
                        float *restrict s_xy, float *restrict s_conic, float *restrict s_opac, float *restrict s_col,
                        int64_t *counter) {
    int njobs = n_images * tiles_x * tiles_y;
    /* D > 4: the tile's output gradients [pixel][channel] and one entry's colour gradient [D] */
    float *vop = D > 4 ? (float *)malloc(sizeof(float) * TP * D) : NULL;
    float *gcd = D > 4 ? (float *)malloc(sizeof(float) * D) : NULL;
    if (D > 4 && (!vop || !gcd)) { free(vop); free(gcd); return; }
    for (;;) {
        int job = (int)__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
        if (job >= njobs) break;
        SETUP
        if (end == start) continue;
        float trans[TP] __attribute__((aligned(64)));
        float tfin[TP] __attribute__((aligned(64)));
        int32_t lastk[TP] __attribute__((aligned(64)));
        float vot[4 * TP] __attribute__((aligned(64)));
        float va[TP] __attribute__((aligned(64)));
        float sbuf[TP] __attribute__((aligned(64)));
        int kmax = bwd_tile_load(i, x0, y0, pw, ph, width, height, D, has_bg, backgrounds, t_final, last, v_out,
                                 v_alpha_out, trans, tfin, lastk, vot, vop, va, sbuf);
        const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), half = _mm256_set1_ps(0.5f);
        const __m256 vthr = _mm256_set1_ps(ATHR), vmax = _mm256_set1_ps(AMAX);
        __m256 px[2] = {_mm256_loadu_ps(pxs), _mm256_loadu_ps(pxs + 8)};
        for (int64_t e = kmax; e >= start; e--) {
            int gid = flat_ids[e];
            float mx = means2d[2 * gid], my = means2d[2 * gid + 1];
            float a = conics[3 * gid], b = conics[3 * gid + 1], c = conics[3 * gid + 2];
            float o = opac[gid];
            int r0, r1;
            row_range(my, a, b, c, o, y0, ph, &r0, &r1);
            __m256i ve = _mm256_set1_epi32((int32_t)e);
            __m256 vb = _mm256_set1_ps(b), vc = _mm256_set1_ps(c), vo = _mm256_set1_ps(o);
            __m256 dx[2], dx2h[2], adx2[2], bdx[2], adx[2];
            for (int h = 0; h < 2; h++) {
                dx[h] = _mm256_sub_ps(_mm256_set1_ps(mx), px[h]);
                dx2h[h] = _mm256_mul_ps(half, _mm256_mul_ps(dx[h], dx[h]));
                adx[h] = _mm256_mul_ps(_mm256_set1_ps(a), dx[h]);
                adx2[h] = _mm256_mul_ps(adx[h], dx[h]);
                bdx[h] = _mm256_mul_ps(vb, dx[h]);
            }
            __m256 cd[4];
            for (int d = 0; d < 4; d++) cd[d] = _mm256_set1_ps(d < D ? colors[(size_t)gid * D + d] : 0.0f);
            __m256 gx = zero, gy = zero, ga = zero, gb = zero, gc = zero, go = zero;
            __m256 gcol[4] = {zero, zero, zero, zero};
            if (D > 4) memset(gcd, 0, sizeof(float) * D);
            for (int r = r0; r < r1; r++) {
                float dy = my - pys[r];
                __m256 vdy = _mm256_set1_ps(dy), cdy2 = _mm256_set1_ps(c * dy * dy);
                for (int h = 0; h < 2; h++) {
                    int off = r * TILE + 8 * h;
                    __m256 sigma = _mm256_fmadd_ps(bdx[h], vdy, _mm256_mul_ps(half, _mm256_add_ps(adx2[h], cdy2)));
                    __m256 vis = exp_neg_poly8(sigma);
                    __m256 ov = _mm256_mul_ps(vo, vis);
                    __m256 alpha = _mm256_min_ps(ov, vmax);
                    __m256 lk = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ve, _mm256_load_si256((const __m256i *)(lastk + off))));
                    __m256 valid = _mm256_andnot_ps(lk, _mm256_and_ps(_mm256_cmp_ps(sigma, zero, _CMP_GE_OQ),
                                                                      _mm256_cmp_ps(alpha, vthr, _CMP_GE_OQ)));
                    if (_mm256_testz_ps(valid, valid)) continue;
                    __m256 ra = _mm256_div_ps(one, _mm256_sub_ps(one, alpha));
                    __m256 tr = _mm256_load_ps(trans + off);
                    tr = _mm256_blendv_ps(tr, _mm256_mul_ps(tr, ra), valid);
                    _mm256_store_ps(trans + off, tr);
                    __m256 fac = _mm256_and_ps(valid, _mm256_mul_ps(alpha, tr));
                    __m256 cv = zero;
                    if (D <= 4) {
                        for (int d = 0; d < D; d++) {
                            __m256 v = _mm256_load_ps(vot + d * TP + off);
                            cv = _mm256_fmadd_ps(cd[d], v, cv);
                            gcol[d] = _mm256_fmadd_ps(fac, v, gcol[d]);
                        }
                    } else {
                        float fr[8] __attribute__((aligned(32))), cvr[8] __attribute__((aligned(32)));
                        _mm256_store_ps(fr, fac);
                        dot_and_grad(vop, off, (unsigned)_mm256_movemask_ps(valid), fr, colors + (size_t)gid * D, D,
                                     gcd, cvr, 8);
                        cv = _mm256_load_ps(cvr);
                    }
                    __m256 sb = _mm256_load_ps(sbuf + off);
                    __m256 v_alpha = _mm256_fmadd_ps(cv, tr, _mm256_mul_ps(ra, _mm256_fmsub_ps(_mm256_load_ps(tfin + off), _mm256_load_ps(va + off), sb)));
                    _mm256_store_ps(sbuf + off, _mm256_fmadd_ps(fac, cv, sb));
                    __m256 keep = _mm256_and_ps(valid, _mm256_cmp_ps(ov, vmax, _CMP_LE_OQ));
                    __m256 vism = _mm256_and_ps(keep, vis);
                    __m256 vsig = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(zero, vo), vism), v_alpha);
                    ga = _mm256_fmadd_ps(vsig, dx2h[h], ga);
                    __m256 vsdy = _mm256_mul_ps(vsig, vdy);
                    gb = _mm256_fmadd_ps(vsdy, dx[h], gb);
                    gc = _mm256_fmadd_ps(_mm256_mul_ps(half, vsdy), vdy, gc);
                    gx = _mm256_fmadd_ps(vsig, _mm256_fmadd_ps(vb, vdy, adx[h]), gx);
                    gy = _mm256_fmadd_ps(vsig, _mm256_fmadd_ps(vc, vdy, bdx[h]), gy);
                    go = _mm256_fmadd_ps(vism, v_alpha, go);
                }
            }
            s_xy[2 * e] = hsum8(gx); s_xy[2 * e + 1] = hsum8(gy);
            s_conic[3 * e] = hsum8(ga); s_conic[3 * e + 1] = hsum8(gb); s_conic[3 * e + 2] = hsum8(gc);
            s_opac[e] = hsum8(go);
            if (D <= 4)
                for (int d = 0; d < D; d++) s_col[e * D + d] = hsum8(gcol[d]);
            else
                memcpy(s_col + (size_t)e * D, gcd, sizeof(float) * D);
        }
    }
    free(vop);
    free(gcd);
}
#endif /* __AVX2__ */

/* ------------------------------------------------------------------ compositing at listed pixels */

/* exp(-s), s >= 0: the polynomial of cpu_composite._exp_neg_poly (clamped to [0, 11], Cody-Waite split, degree 7,
 * 2^-n from exponent bits: exact), one value at a time. */
static inline float exp_neg_scalar(float s) {
    float ss = s < 11.0f ? s : 11.0f;
    ss = ss > 0.0f ? ss : 0.0f;
    float nf = floorf(ss * LOG2E + 0.5f);
    float r = ss - nf * LN2HI - nf * LN2LO;
    float p = P7;
    p = p * r + P6; p = p * r + P5; p = p * r + P4; p = p * r + P3;
    p = p * r + P2; p = p * r + P1; p = p * r + P0;
    union { int32_t i; float f; } u;
    u.i = (127 - (int32_t)nf) << 23;
    return p * u.f;
}

/* One batch of cpu_pixels.pixel_weights' walk: groups [g0, g1) (the listed pixels of one tile each, sorted by row;
 * see cpu_pixels._numba_pass for the arrays). Per group: each tile entry front to back, against the pixels of the
 * rows it can reach (half_h), pixel by pixel; most pairs end at the sigma bound (reach) before any exp. The rules of
 * cpu_pixels._tile_pass (sigma in [0, reach], alpha >= 1/255, stop before next_T <= 1e-4). Scalar on purpose: a
 * 16-lane version that evaluates every pixel of the rows was 1.6x slower than numba's scalar walk, this one is
 * ~1.45x faster. Jobs (groups) come from the shared counter. */
void pcf_pixel_pass(int64_t g0, int64_t g1, const int64_t *restrict groups, const int64_t *restrict order,
                    const int64_t *restrict jobs, const int64_t *restrict rows, const float *restrict pxs,
                    const float *restrict pys, int64_t tiles_x, int64_t T, const int64_t *restrict tile_offsets,
                    const int32_t *restrict flat_ids, const float *restrict means2d, const float *restrict conics,
                    const float *restrict opac, const float *restrict reach, const double *restrict half_h,
                    const int64_t *restrict sslot, int64_t *restrict s_ids, float *restrict s_ws,
                    int64_t *restrict counts_go, float *restrict t_final, int64_t *counter) {
    int64_t q0 = groups[g0], mmax = 0;
    for (int64_t gi = g0; gi < g1; gi++) mmax = groups[gi + 1] - groups[gi] > mmax ? groups[gi + 1] - groups[gi] : mmax;
    size_t n = (size_t)mmax + 1;
    float *px = (float *)malloc(sizeof(float) * n), *py = (float *)malloc(sizeof(float) * n);
    float *tr = (float *)malloc(sizeof(float) * n), *al = (float *)malloc(sizeof(float) * n);
    int64_t *cnt = (int64_t *)malloc(sizeof(int64_t) * n);
    if (!px || !py || !tr || !al || !cnt) goto done;
    for (;;) {
        int64_t gi = g0 + __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
        if (gi >= g1) break;
        int64_t a0 = groups[gi], m = groups[gi + 1] - a0;
        const int64_t *members = order + a0;
        const int64_t *slot = sslot + (a0 - q0);
        int64_t job = jobs[members[0]];
        int64_t y0 = ((job % T) / tiles_x) * TILE;
        int64_t row_start[TILE + 1] = {0};
        for (int64_t j = 0; j < m; j++) row_start[rows[members[j]] + 1]++;
        for (int r = 0; r < TILE; r++) row_start[r + 1] += row_start[r];
        for (int64_t j = 0; j < m; j++) {
            px[j] = pxs[members[j]];
            py[j] = pys[members[j]];
            tr[j] = 1.0f;
            al[j] = 1.0f;
            cnt[j] = 0;
        }
        int64_t n_alive = m;
        for (int64_t e = tile_offsets[job]; e < tile_offsets[job + 1] && n_alive > 0; e++) {
            int32_t g = flat_ids[e];
            float mx = means2d[2 * (size_t)g], my = means2d[2 * (size_t)g + 1];
            float a = conics[3 * (size_t)g], b = conics[3 * (size_t)g + 1], c = conics[3 * (size_t)g + 2];
            float o = opac[g], rc = reach[g];
            double ly = (double)my - 0.5 - (double)y0, hh = half_h[g];
            double lo = ceil(ly - hh), hi = floor(ly + hh) + 1.0;
            int r0 = lo < 0.0 ? 0 : (lo > TILE ? TILE : (int)lo);
            int r1 = hi < (double)r0 ? r0 : (hi > TILE ? TILE : (int)hi);
            int64_t j1 = row_start[r1];
            for (int64_t j = row_start[r0]; j < j1; j++) {
                if (al[j] == 0.0f) continue;
                float dx = mx - px[j], dy = my - py[j];
                float sigma = 0.5f * (a * dx * dx + c * dy * dy) + b * dx * dy;
                if (sigma < 0.0f || sigma > rc) continue;
                float x = o * exp_neg_scalar(sigma);
                float alpha = x < AMAX ? x : AMAX;
                if (alpha < ATHR) continue;
                float t = tr[j], nt = t * (1.0f - alpha);
                if (nt <= TSTOP) { al[j] = 0.0f; n_alive--; continue; }
                int64_t q = slot[j] + cnt[j]++;
                s_ids[q] = g;
                s_ws[q] = alpha * t;
                tr[j] = nt;
            }
        }
        for (int64_t j = 0; j < m; j++) {
            counts_go[a0 + j] = cnt[j];
            t_final[members[j]] = tr[j];
        }
    }
done:
    free(px); free(py); free(tr); free(al); free(cnt);
}

/* Which kernels this build has: 512 (AVX-512), 256 (AVX2 + FMA) or 0 (none: the caller uses numba). */
int pcf_native_isa(void) {
#if defined(__AVX512F__)
    return 512;
#elif defined(__AVX2__) && defined(__FMA__)
    return 256;
#else
    return 0;
#endif
}

/* Forward: out [I,H,W,D], t_final [I,H,W], last [I,H,W] (every pixel written); see composite_fwd in numba. */
void pcf_composite_fwd(const float *means2d, const float *conics, const float *opac, const float *colors,
                       const float *backgrounds, int has_bg, const int64_t *tile_offsets, const int32_t *flat_ids,
                       int n_images, int width, int height, int tiles_x, int tiles_y, int D,
                       float *out, float *t_final, int32_t *last, int64_t *counter) {
#if defined(__AVX512F__)
    composite_fwd_avx512(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                         n_images, width, height, tiles_x, tiles_y, D, out, t_final, last, counter);
#elif defined(__AVX2__) && defined(__FMA__)
    composite_fwd_avx2(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                       n_images, width, height, tiles_x, tiles_y, D, out, t_final, last, counter);
#endif
}

/* Backward: per-entry gradient slots s_xy [M,2], s_conic [M,3], s_opac [M], s_col [M,D], zeroed by the caller
 * (entries behind every pixel's last contribution stay 0). */
void pcf_composite_bwd(const float *means2d, const float *conics, const float *opac, const float *colors,
                       const float *backgrounds, int has_bg, const int64_t *tile_offsets, const int32_t *flat_ids,
                       int n_images, int width, int height, int tiles_x, int tiles_y, int D,
                       const float *t_final, const int32_t *last, const float *v_out, const float *v_alpha_out,
                       float *s_xy, float *s_conic, float *s_opac, float *s_col, int64_t *counter) {
#if defined(__AVX512F__)
    composite_bwd_avx512(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids, n_images,
                         width, height, tiles_x, tiles_y, D, t_final, last, v_out, v_alpha_out,
                         s_xy, s_conic, s_opac, s_col, counter);
#elif defined(__AVX2__) && defined(__FMA__)
    composite_bwd_avx2(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids, n_images,
                       width, height, tiles_x, tiles_y, D, t_final, last, v_out, v_alpha_out,
                       s_xy, s_conic, s_opac, s_col, counter);
#endif
}
