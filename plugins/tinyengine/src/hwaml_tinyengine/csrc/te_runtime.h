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

/* saturating rounding doubling high multiply */
static inline int32_t te_srdhm(int32_t a, int32_t b) {
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* rounding divide by a power of two */
static inline int32_t te_rdbpot(int32_t x, int e) {
    int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    int32_t rem = x & mask;
    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

/* requantise an int32 accumulator by a Q31 multiplier and a shift */
static inline int32_t te_requant(int32_t acc, int32_t mult, int shift) {
    int64_t x = (int64_t)acc * ((int64_t)1 << (shift > 0 ? shift : 0));
    if (x > INT32_MAX) x = INT32_MAX;
    if (x < INT32_MIN) x = INT32_MIN;
    return te_rdbpot(te_srdhm((int32_t)x, mult), shift > 0 ? 0 : -shift);
}

static inline int8_t te_clamp(int32_t v, int32_t lo, int32_t hi) {
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
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
