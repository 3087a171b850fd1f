/* hwaml-tinyengine runtime: fixed-point helpers with gemmlowp semantics (exact
 * in C99, bit-identical to the Python int8 reference) and the window-table head
 * every layer kernel starts with. Included once by the generated model.c. */
#ifndef TE_RUNTIME_H
#define TE_RUNTIME_H
#include <stdint.h>

/* Placement of the arena and of the constants: define TE_ARENA_ATTR /
 * TE_WEIGHTS_ATTR (any attribute), or TE_ARENA_SECTION / TE_WEIGHTS_SECTION (a
 * section name, GCC/Clang), e.g. -DTE_ARENA_SECTION='".bss.te_arena"'. */
#ifndef TE_ARENA_ATTR
#ifdef TE_ARENA_SECTION
#define TE_ARENA_ATTR __attribute__((section(TE_ARENA_SECTION), aligned(8)))
#else
#define TE_ARENA_ATTR
#endif
#endif
#ifndef TE_WEIGHTS_ATTR
#ifdef TE_WEIGHTS_SECTION
#define TE_WEIGHTS_ATTR __attribute__((section(TE_WEIGHTS_SECTION)))
#else
#define TE_WEIGHTS_ATTR
#endif
#endif
/* per-layer profiling marks of the firmware harness (-DTE_PROFILE) */
#ifdef TE_PROFILE
void te_profile_mark(int layer);
#define TE_MARK(layer) te_profile_mark(layer)
#else
#define TE_MARK(layer) ((void)0)
#endif

/* saturating rounding doubling high multiply: gemmlowp's nudge-and-truncate
 * equals (ab + 2^30) >> 31 with an arithmetic shift; it saturates only for
 * a = b = INT32_MIN, which cannot occur (the multipliers are in [0, 2^31)) */
static inline int32_t te_srdhm(int32_t a, int32_t b) {
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* rounding divide by a power of two */
static inline int32_t te_rdbpot(int32_t x, int e) {
    int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    int32_t rem = x & mask;
    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

/* requantise an int32 accumulator by a Q31 multiplier and a shift (any shift) */
static inline int32_t te_requant(int32_t acc, int32_t mult, int shift) {
    int32_t x = acc;
    if (shift > 0) {
        const int32_t lim = INT32_MAX >> shift;
        x = acc > lim ? INT32_MAX : (acc < -lim - 1 ? INT32_MIN : (int32_t)((uint32_t)acc << shift));
    }
    return te_rdbpot(te_srdhm(x, mult), shift > 0 ? 0 : -shift);
}

/* The DSP path: SMLAD/SXTB16/SMLABB through ACLE intrinsics on cores with the
 * DSP extension (Cortex-M4/M7/M33...), unless -DTE_PORTABLE; every kernel also has
 * a portable C path with the same arithmetic (bit-identical results). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(TE_PORTABLE)
#define TE_DSP 1
#include <arm_acle.h>
#else
#define TE_DSP 0
#endif

#if defined(__GNUC__)
#define TE_INLINE static inline __attribute__((always_inline))
#else
#define TE_INLINE static inline
#endif

/* every layer kernel is its own function (GCC would otherwise inline each
 * once-called kernel into the model's run function, whose register allocation
 * over all layers at once spills the kernels' inner loops) */
#if defined(__GNUC__)
#define TE_KERNEL static __attribute__((noinline))
#else
#define TE_KERNEL static
#endif

/* token pasting after expansion (a kernel's helper named after its TE_FN) */
#define TE_CAT2_(a, b) a##b
#define TE_CAT_(a, b) TE_CAT2_(a, b)

/* loop unrolling hints (GCC); the generator makes every trip count a literal */
#if defined(__GNUC__) && !defined(__clang__)
#define TE_UNROLL_ALL _Pragma("GCC unroll 64")
#define TE_UNROLL_4 _Pragma("GCC unroll 4")
#else
#define TE_UNROLL_ALL
#define TE_UNROLL_4
#endif

/* a 32-bit word of a scratch buffer (may alias the int8 arena) */
#if defined(__GNUC__)
typedef uint32_t __attribute__((may_alias)) te_word;
#else
typedef uint32_t te_word;
#endif

/* four int8 values as one 32-bit word (an unaligned load on ARMv7-M) */
TE_INLINE uint32_t te_ld32(const int8_t *p) {
    uint32_t v;
#if defined(__GNUC__)
    __builtin_memcpy(&v, p, 4);
#else
    const uint8_t *b = (const uint8_t *)p;
    v = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
#endif
    return v;
}

#if TE_DSP
/* SXTB16 of x rotated by 8: the int8 lanes 1 and 3 as int16 (one instruction) */
TE_INLINE int32_t te_sxtb16_ror8(uint32_t x) {
#if defined(__GNUC__)
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return __sxtb16((x >> 8) | (x << 24));
#endif
}
#endif

/* 32-bit requantisation, inlined: gemmlowp's saturating rounding doubling high
 * multiply then rounding divide by 2^e, for e = -shift >= 1 and |acc| < 2^30
 * (the generator checks both per layer and otherwise uses te_requant). With
 * a = 2 acc: SRDHM(acc, m) = h = (a m + 2^31) >> 32; the rounding divide is
 * (h + 2^(e-1) - (h < 0)) >> e. Where h != 0, h < 0 exactly when acc < 0, and
 * where h = 0 both forms give 0 (e >= 1), so the divide's offset
 * r = 2^(e-1) + (acc >> 31) can be added inside the multiply: one SMMLAR,
 * (r 2^32 + a m + 2^31) >> 32 = h + r, then one arithmetic shift. Identical to
 * te_requant there. te_requant_fast_r takes the channel's 2^(e-1) precomputed
 * (te_round_of(e)), so a kernel can hoist it out of its pixel loop. */
TE_INLINE int32_t te_round_of(int32_t e) {
    return (int32_t)(1u << (e - 1));
}
TE_INLINE int32_t te_requant_fast_r(int32_t acc, int32_t mult, int32_t e, int32_t round) {
#if TE_DSP && defined(__GNUC__)
    int32_t h;
    const int32_t a = (int32_t)((uint32_t)acc << 1);
    const int32_t r = round + (acc >> 31);
    __asm__("smmlar %0, %1, %2, %3" : "=r"(h) : "r"(a), "r"(mult), "r"(r));
    return h >> e;
#else
    const int32_t h = (int32_t)(((int64_t)acc * (int64_t)mult + ((int64_t)1 << 30)) >> 31);
    return (h + round + (h < 0 ? -1 : 0)) >> e;
#endif
}
TE_INLINE int32_t te_requant_fast(int32_t acc, int32_t mult, int32_t e) {
    return te_requant_fast_r(acc, mult, e, te_round_of(e));
}

/* the requantisation a kernel uses: the generator defines TE_RQ as TE_RQ_FAST when
 * the layer's shifts are all in [-22, -1] and its accumulators stay under 2^30
 * (the inlined SMMLAR form is exact there, with the output zero point folded
 * into the rounding offset: (h + 2^(e-1) + zp 2^e) >> e = ((h + 2^(e-1)) >> e) + zp
 * without overflow for e <= 22), else TE_RQ_EXACT (te_requant, any shift). A
 * kernel loads one output channel's constants once (te_rqc_of) and applies them
 * to each of its pixels' accumulators (te_rq). */
#define TE_RQ_FAST 1
#define TE_RQ_EXACT 0
typedef struct {
    int32_t m, e, r;
} te_rqc;
TE_INLINE te_rqc te_rqc_of(int32_t mult, int32_t shift, int32_t zp, int fast) {
    te_rqc q;
    q.m = mult;
    if (fast) {
        q.e = -shift;
        q.r = (int32_t)((uint32_t)(2 * zp + 1) << (q.e - 1)); /* 2^(e-1) + zp 2^e */
    } else {
        q.e = shift;
        q.r = zp;
    }
    return q;
}
/* the requantised accumulator plus the output zero point */
TE_INLINE int32_t te_rq(int32_t acc, te_rqc q, int fast) {
    return fast ? te_requant_fast_r(acc, q.m, q.e, q.r) : te_requant(acc, q.m, q.e) + q.r;
}

TE_INLINE int8_t te_clamp(int32_t v, int32_t lo, int32_t hi) {
#if TE_DSP
    /* SSAT to int8, then the activation's bounds where they are narrower (literals) */
    v = __ssat(v, 8);
    if (lo > -128) v = v < lo ? lo : v;
    if (hi < 127) v = v > hi ? hi : v;
    return (int8_t)v;
#else
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
#endif
}

/* a table activation: entry v + 128 is the output for the int8 value v */
static inline int8_t te_lut(const int8_t *lut, int32_t v) {
    return lut[te_clamp(v, -128, 127) + 128];
}

static inline int32_t te_rounded_div(int32_t acc, int32_t n) {
    return acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
}

/* Window table of a layer call (int16): the region computed, oy0 oy1 ox0 ox1
 * (full-tensor coordinates, half open); the output buffer's origin and width,
 * by bx bw; then by bx bw of each input buffer. Outside the patch stage every
 * window is the whole tensor. */
#define TE_WIN_HEAD \
    const int oy0 = win[0], oy1 = win[1], ox0 = win[2], ox1 = win[3]; \
    const int oby = win[4], obx = win[5], obw = win[6];

#endif
